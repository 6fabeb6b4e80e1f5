"""`kaudit verify` for --mode webhook|both: kube-apiserver's webhook backend points at
kaudit's receiver and the receiver answers over TLS with the CA the apiserver trusts.

The receiver listens on the node's loopback, so the TLS check runs on the node (through
the host seam) with the node's python3: it takes the server URL and the CA from the
webhook kubeconfig itself, which is exactly what kube-apiserver uses. That the probe's
event reaches Loki through this path is the cluster-wide `probe` check.
"""

from __future__ import annotations

import base64

from kaudit.core.errors import KauditError

#: runs on the node: GET <server>/healthz verifying the server against the kubeconfig's CA
_TLS_CHECK = r"""
import base64, http.client, ssl, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
ctx = ssl.create_default_context(cadata=base64.b64decode(sys.argv[2]).decode())
try:
    c = http.client.HTTPSConnection(u.hostname, u.port or 443, context=ctx, timeout=10)
    c.request("GET", "/healthz")
    r = c.getresponse()
    print(r.status, r.read(200).decode(errors="replace").strip())
except Exception as e:
    print(0, type(e).__name__ + ": " + str(e))
"""


def check_webhook(ctx, node):
    from kaudit.engine.verify.checks import failed, passed, skipped

    spec = ctx.settings.spec
    mode = getattr(spec, "mode", "log")
    if mode == "log":
        return skipped("--mode log: no audit webhook (kaudit verify --mode webhook checks one)")
    host = node.open()
    flags = node.facts.get("apiserver_flags") or node.facts.get("manifest_flags") or {}
    path = spec.webhook_config_path
    if flags.get("audit-webhook-config-file") != path:
        return failed(f"kube-apiserver has no --audit-webhook-config-file={path}",
                      f"kaudit up --mode {mode} --only webhook,apiserver sets it")
    try:
        text = host.read_file(path).decode("utf-8", "replace")
    except KauditError as e:
        return failed(e.message, f"kaudit up --mode {mode} --only webhook writes it")
    try:
        from ruamel.yaml import YAML

        cluster = YAML(typ="safe").load(text)["clusters"][0]["cluster"]
        url, ca = str(cluster["server"]), str(cluster["certificate-authority-data"])
        base64.b64decode(ca, validate=True)
    except Exception as e:  # any shape problem is reported the same way
        return failed(f"{path} is not a webhook kubeconfig with a server and certificate-authority-data ({type(e).__name__})",
                      f"kaudit up --mode {mode} --only webhook writes it again")
    r = host.run(["python3", "-c", _TLS_CHECK, url, ca], check=False, sudo=False, timeout=60)
    if not r.ok:
        return failed(f"cannot run python3 on {node.label} to reach {url}: {(r.err or r.out).strip()[-200:]}",
                      "the check needs python3 on the node; or check the receiver pod: kubectl -n kaudit logs ds/kaudit-shipper -c webhook")
    status, _, body = r.out.strip().partition(" ")
    if status != "200":
        return failed(f"the receiver at {url} does not answer over TLS with the kubeconfig's CA: {body[:200]}",
                      "is the shipper DaemonSet's webhook container running on this node? "
                      "kubectl -n kaudit get pods -l app.kubernetes.io/name=kaudit-shipper -o wide", url=url)
    return passed(f"kube-apiserver posts to {url}; the receiver answers over TLS with the kubeconfig's CA ({body[:80]})",
                  url=url)
