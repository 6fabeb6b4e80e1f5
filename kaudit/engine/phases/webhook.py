"""The `webhook` phase (kaudit up --mode webhook|both): TLS material and the webhook
kubeconfig on the node, before the apiserver phase points kube-apiserver at it.

Files (root-owned):
  /etc/kubernetes/kaudit-webhook/ca.crt, tls.crt, tls.key  the receiver's (mounted into its pod)
  /etc/kubernetes/audit-webhook.kubeconfig                  kube-apiserver's (server URL, CA, client cert)

The receiver listens on the node's loopback (127.0.0.1:9443, hostNetwork), so each
control-plane node's apiserver posts to its own receiver and one kubeconfig shape fits
every node. Existing files are kept while they still fit (same URL, CA and client
certificate, server certificate valid for the address): rerunning changes nothing.
"""

from __future__ import annotations

import base64
import posixpath

from kaudit.engine.workflow import Outcome, UpContext

LISTEN_HOST = "127.0.0.1"


def paths() -> dict[str, str]:
    from kaudit.core.webhook_tls import TLS_DIR

    return {"ca": posixpath.join(TLS_DIR, "ca.crt"), "cert": posixpath.join(TLS_DIR, "tls.crt"),
            "key": posixpath.join(TLS_DIR, "tls.key")}


def listen_address() -> str:
    from kaudit.core.webhook_tls import DEFAULT_PORT

    return f"{LISTEN_HOST}:{DEFAULT_PORT}"


def _fits(ctx: UpContext, url: str) -> str | None:
    """None when the node's files are complete and consistent, else what is wrong."""
    from kaudit.core.webhook_tls import cert_hosts

    node, spec = ctx.node, ctx.options.spec
    p = paths()
    missing = [f for f in (*p.values(), spec.webhook_config_path) if not node.exists(f)]
    if missing:
        return f"{missing[0]} is missing"
    kubeconfig = node.read_file(spec.webhook_config_path).decode("utf-8", "replace")
    ca = node.read_file(p["ca"])
    if f'server: "{url}"' not in kubeconfig:
        return f"{spec.webhook_config_path} names another server"
    if base64.b64encode(ca).decode() not in kubeconfig:
        return f"{spec.webhook_config_path} trusts another CA than {p['ca']}"
    try:
        hosts = cert_hosts(node.read_file(p["cert"]))
    except ValueError:
        return f"{p['cert']} is not a PEM certificate"
    if LISTEN_HOST not in hosts:
        return f"{p['cert']} is not valid for {LISTEN_HOST}"
    return None


def run(ctx: UpContext) -> Outcome:
    from kaudit.core.webhook_tls import TLS_DIR, make_pki, webhook_kubeconfig, webhook_url

    spec = ctx.options.spec
    if getattr(spec, "mode", "log") == "log":
        return Outcome.skipped("--mode log: kube-apiserver writes the audit log, no webhook")
    node = ctx.node
    url = webhook_url(LISTEN_HOST, int(listen_address().rpartition(":")[2]))
    problem = _fits(ctx, url)
    if problem is None:
        return Outcome.unchanged(f"{spec.webhook_config_path} and {TLS_DIR}/ already set up for {url}")
    if ctx.dry_run:
        return Outcome.planned(f"would write a CA, server and client certificates to {TLS_DIR}/ and "
                               f"{spec.webhook_config_path} (server {url}) ({problem})")
    pki = make_pki([LISTEN_HOST, "localhost"])
    p = paths()
    node.makedirs(TLS_DIR, 0o700)
    node.write_file(p["ca"], pki.ca_cert, mode=0o644)
    node.write_file(p["cert"], pki.server_cert, mode=0o644)
    node.write_file(p["key"], pki.server_key, mode=0o600)
    # the CA key is not kept: new certificates mean a new CA, written by this phase again
    text = webhook_kubeconfig(url, pki.ca_cert, pki.client_cert, pki.client_key)
    node.write_file(spec.webhook_config_path, text.encode(), mode=0o600)
    from kaudit.engine.phases.apiserver import read_manifest
    from kaudit.core.manifest import audit_flags_in

    try:
        flags = audit_flags_in(read_manifest(node)[1])
    except Exception:  # the apiserver phase reports a bad manifest with its own message
        flags = {}
    if flags.get("audit-webhook-config-file") == spec.webhook_config_path:
        ctx.ui.warn(f"{node.name}: kube-apiserver reads {spec.webhook_config_path} only when it starts and already "
                    "uses it: restart it (or the receiver pods) so both use the new certificates")
    return Outcome.changed(f"wrote {TLS_DIR}/ (CA, server and client certificates) and {spec.webhook_config_path} "
                           f"(server {url}) ({problem})")
