"""Attacks the detection rules look for, played with kubectl against a real kube-apiserver.

The corpus has no event for ten of the rules (port-forward, ephemeral containers, node proxy,
...). This scenario makes a real v1.36 apiserver write them, under the audit policy
`kaudit up` installs (the gce profile). There is no kubelet: port-forward and node proxy
requests fail when the apiserver dials the node, but the apiserver audits them first, which
is what a detection sees.

Used two ways:
- tests/test_detect_real_apiserver.py plays it when a kube-apiserver binary is available and
  checks that `kaudit detect` finds every attack in the log the apiserver just wrote;
- ``python tests/detect_scenario.py OUT.jsonl`` records that log, from which the lines in
  tests/data/detect/kube-apiserver-v1.36-kaudit-scenario.jsonl were copied (see ATTRIBUTION.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

NS = "shop"

#: the rules the scenario must fire, each with the step that does it
ATTACKS = {
    "pod-portforward": "port-forward to pod web",
    "pod-ephemeral-container": "kubectl debug: an ephemeral container in pod web",
    "node-proxy-access": "GET through nodes/node-1/proxy",
    "binding-to-broad-group": "ClusterRoleBinding of view to system:authenticated",
    "token-request-by-human": "a token for ServiceAccount builder, asked by admin",
    "csr-approved": "a client certificate request approved",
    "admission-webhook-changed": "a ValidatingWebhookConfiguration created and deleted",
    "events-deleted": "events deleted through events.k8s.io",
    "control-plane-mirror-pod-changed": "the kube-apiserver mirror pod labelled and deleted",
    "system-namespace-daemonset-or-cronjob": "a DaemonSet and a CronJob created in kube-system",
    "binding-to-cluster-admin": "ClusterRoleBinding of cluster-admin to user mallory",
    "role-wildcard-verbs": "ClusterRole ops-everything: every verb",
    "role-wildcard-resources": "ClusterRole ops-everything: every resource",
    "role-grants-secrets-read": "ClusterRole ops-everything: every resource, secrets included",
    "role-escalate-bind-impersonate": "ClusterRole ci-deployer: escalate, bind, impersonate",
    "role-grants-pod-exec": "Role debugger: pods/exec and pods/portforward",
}

#: the same kinds of request, done the benign way: these must not fire the rule named
BENIGN = {
    "binding-to-broad-group": "ClusterRoleBinding of view to user carol",
    "system-namespace-daemonset-or-cronjob": "a DaemonSet created in shop",
    "control-plane-mirror-pod-changed": "pod web labelled",
    "admission-webhook-changed": "webhook configurations listed",
    "token-request-by-human": "a token asked by ServiceAccount builder itself",
    "role-grants-secrets-read": "Role config-reader: get configmaps, delete secrets (no read of secrets)",
}

_POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}
_MIRROR = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "kube-apiserver-node-1", "namespace": "kube-system",
                        "annotations": {"kubernetes.io/config.mirror": "0123456789abcdef", "kubernetes.io/config.source": "file"},
                        "labels": {"component": "kube-apiserver", "tier": "control-plane"}},
           "spec": {"nodeName": "node-1", "priorityClassName": "system-node-critical",
                    "containers": [{"name": "kube-apiserver", "image": "registry.k8s.io/kube-apiserver:v1.36.2",
                                    "command": ["kube-apiserver", "--audit-policy-file=/etc/kubernetes/audit/policy.yaml"]}]}}


def _daemonset(namespace: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "node-agent", "namespace": namespace},
            "spec": {"selector": {"matchLabels": {"app": "node-agent"}},
                     "template": {"metadata": {"labels": {"app": "node-agent"}},
                                  "spec": {"containers": [{"name": "agent", "image": "busybox:1.36", "command": ["sleep", "infinity"]}]}}}}


_WEBHOOK = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "shop-guard"},
            "webhooks": [{"name": "guard.shop.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                          "failurePolicy": "Ignore", "clientConfig": {"url": "https://guard.example.com/validate"},
                          "namespaceSelector": {"matchLabels": {"kaudit-scenario": "never"}},
                          "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}]}]}
_OPS = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ops-everything"},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}
_DEPLOYER = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ci-deployer"},
             "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles", "roles"], "verbs": ["escalate", "bind"]},
                       {"apiGroups": [""], "resources": ["users", "serviceaccounts"], "verbs": ["impersonate"]}]}
_DEBUGGER = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "debugger", "namespace": NS},
             "rules": [{"apiGroups": [""], "resources": ["pods/exec", "pods/portforward"], "verbs": ["create", "get"]}]}
#: reads configmaps, deletes secrets: the LogQL approximation sees "secrets" and "get" in one line
_CONFIG_READER = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "config-reader", "namespace": NS},
                  "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]},
                            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["delete"]}]}
_EVENT = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.started", "namespace": NS},
          "involvedObject": {"kind": "Pod", "namespace": NS, "name": "web"}, "reason": "Started", "message": "Started container web",
          "type": "Normal", "source": {"component": "kubelet", "host": "node-1"}}


def _csr() -> dict:
    key = subprocess.run(["openssl", "genrsa", "2048"], capture_output=True, check=True).stdout
    p = subprocess.run(["openssl", "req", "-new", "-key", "/dev/stdin", "-subj", "/CN=mallory/O=shop-admins"],
                       input=key, capture_output=True, check=True)
    import base64

    return {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": "mallory"},
            "spec": {"request": base64.b64encode(p.stdout).decode(), "signerName": "kubernetes.io/kube-apiserver-client",
                     "usages": ["client auth"], "expirationSeconds": 86400}}


def play(api) -> None:
    """Every step through kubectl, as user admin (group system:masters) unless it says otherwise."""
    k = api.kubectl

    def apply(obj: dict) -> None:
        k("create", "-f", "-", input=json.dumps(obj).encode())

    k("create", "namespace", NS)
    k("create", "serviceaccount", "default", "-n", NS)  # kube-controller-manager's job; none runs here
    apply({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
           "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}})
    apply(_POD)
    # kubectl port-forward refuses a pod that is not Running; there is no kubelet to say so
    k("patch", "pod", "web", "-n", NS, "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Running"}}')
    k("label", "pod", "web", "-n", NS, "tier=frontend")  # benign: a pod patch outside kube-system
    # port-forward: the apiserver audits the upgrade, then fails to reach the kubelet
    from real_apiserver import free_port

    local = free_port()
    pf = subprocess.Popen(["kubectl", "--kubeconfig", str(api.kubeconfig), "port-forward", "-n", NS, "pod/web", f"{local}:80"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        try:  # the first connection makes kubectl open the stream
            urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=3).read()
        except OSError:
            pass
        time.sleep(1)
    finally:
        pf.kill()
        pf.wait()
    k("debug", "-n", NS, "pod/web", "--image=busybox:1.36", "--container=debugger", "--profile=general", "--", "sleep", "600")
    k("get", "--raw", "/api/v1/nodes/node-1/proxy/metrics", check=False)
    k("create", "clusterrolebinding", "view-everyone", "--clusterrole=view", "--group=system:authenticated")
    k("create", "clusterrolebinding", "view-carol", "--clusterrole=view", "--user=carol")
    k("create", "clusterrolebinding", "ops-admin", "--clusterrole=cluster-admin", "--user=mallory")
    for role in (_OPS, _DEPLOYER, _DEBUGGER, _CONFIG_READER):
        apply(role)
    k("create", "serviceaccount", "builder", "-n", NS)
    k("create", "token", "builder", "-n", NS, "--duration=10m")
    token = k("create", "token", "builder", "-n", NS, "--duration=10m").stdout.decode().strip()
    # the ServiceAccount asks for its own token: allowed by a Role, and not a human
    k("create", "role", "self-token", "-n", NS, "--verb=create", "--resource=serviceaccounts/token", "--resource-name=builder")
    k("create", "rolebinding", "self-token", "-n", NS, "--role=self-token", f"--serviceaccount={NS}:builder")
    k("create", "token", "builder", "-n", NS, "--duration=10m", token=token)
    apply(_csr())
    k("certificate", "approve", "mallory")
    k("get", "validatingwebhookconfigurations,mutatingwebhookconfigurations")
    apply(_WEBHOOK)
    k("delete", "validatingwebhookconfiguration", "shop-guard")
    apply(_EVENT)
    k("delete", "events.events.k8s.io", "--all", "-n", NS)
    apply(_MIRROR)
    k("label", "pod", "kube-apiserver-node-1", "-n", "kube-system", "audit=off")
    k("delete", "pod", "kube-apiserver-node-1", "-n", "kube-system", "--grace-period=0", "--force", "--wait=false")
    apply(_daemonset("kube-system"))
    apply(_daemonset(NS))
    k("create", "cronjob", "cleanup", "-n", "kube-system", "--image=busybox:1.36", "--schedule=*/5 * * * *", "--", "true")


def record(root: Path, policy: str | None = None, after=None) -> Path:
    """Start an apiserver under `policy` (default: the gce profile kaudit up installs), play
    the scenario and then `after(api)` if given, stop; returns the audit log path."""
    from kaudit.core.policy import policy_text
    from real_apiserver import start

    root.mkdir(parents=True, exist_ok=True)
    policy_file, log = root / "audit-policy.yaml", root / "audit.log"
    policy_file.write_text(policy if policy is not None else policy_text("gce"))
    api = start(root / "apiserver", extra_args=(f"--audit-policy-file={policy_file}", f"--audit-log-path={log}", "--audit-log-format=json"))
    try:
        play(api)
        if after is not None:
            after(api)
    finally:
        api.stop()
    return log


if __name__ == "__main__":
    import shutil
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/detect_scenario.py OUT.jsonl  (needs kube-apiserver, etcd and kubectl)")
    out = Path(sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        try:
            log = record(Path(tmp))
        except BaseException as e:  # real_apiserver says what is missing with pytest.skip
            if type(e).__name__ == "Skipped":
                sys.exit(f"detect_scenario: {e}")
            raise
        shutil.copy(log, out)
    print(f"wrote {out}")
