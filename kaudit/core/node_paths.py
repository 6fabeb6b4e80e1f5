"""Where kubeadm keeps things on a control-plane node (FACTS.md §2), for every layer that names them."""

#: where kubeadm (and so kaudit) keeps the apiserver's static pod manifest
APISERVER_MANIFEST = "/etc/kubernetes/manifests/kube-apiserver.yaml"
#: kubeadm's admin kubeconfig on a control-plane node
ADMIN_CONF = "/etc/kubernetes/admin.conf"
#: kubeadm keeps its own backups and staging dirs here, outside the manifests dir (FACTS.md §2.4)
BACKUP_ROOT = "/etc/kubernetes/tmp"
BACKUP_PREFIX = "kaudit-backup-"
