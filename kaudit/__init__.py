"""kaudit: Kubernetes audit logging from kube-apiserver flags to Loki, verified."""

__version__ = "0.1.0"
