"""Certificates and the kubeconfig for the audit webhook: pure (PEM and YAML text out).

kube-apiserver talks to the webhook receiver over TLS; kaudit makes a small private CA
for it (the apiserver trusts it through the webhook kubeconfig's
certificate-authority-data), a server certificate for the receiver's addresses and a
client certificate the receiver requires from the apiserver (--client-ca-file), so
nothing else on the node can inject events. Generated with `cryptography`, which
kaudit already has through paramiko; the shipper itself only loads the PEM files.
"""

from __future__ import annotations

import base64
import datetime as _dt
import ipaddress
import json
from dataclasses import dataclass

#: the receiver's default port on the node (hostNetwork)
DEFAULT_PORT = 9443
#: where kaudit puts the webhook kubeconfig on the node (outside the manifests directory)
KUBECONFIG_PATH = "/etc/kubernetes/audit-webhook.kubeconfig"
#: the receiver's TLS files on the node, mounted into the receiver pod
TLS_DIR = "/etc/kubernetes/kaudit-webhook"

CA_DAYS = 3650
LEAF_DAYS = 825


@dataclass(frozen=True)
class WebhookPKI:
    ca_cert: bytes
    ca_key: bytes
    server_cert: bytes
    server_key: bytes
    client_cert: bytes
    client_key: bytes


def _key():
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _pem_cert(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def make_pki(hosts: list[str], *, now: _dt.datetime | None = None) -> WebhookPKI:
    """A CA, a server certificate for `hosts` (IP addresses and DNS names) and a client
    certificate for kube-apiserver."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = now or _dt.datetime.now(_dt.timezone.utc)
    start = now - _dt.timedelta(minutes=5)  # clock skew between this machine and the node
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kaudit audit webhook CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(now + _dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage, sans):
        key = _key()
        b = (
            x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(now + _dt.timedelta(days=LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return _pem_cert(b.sign(ca_key, hashes.SHA256())), _pem_key(key)

    sans = []
    for h in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    server_cert, server_key = leaf("kaudit-webhook", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    client_cert, client_key = leaf("kube-apiserver-audit-webhook", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return WebhookPKI(_pem_cert(ca), _pem_key(ca_key), server_cert, server_key, client_cert, client_key)


def cert_hosts(pem: bytes) -> list[str]:
    """The subject alternative names of a certificate (to see whether it still fits)."""
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.IPAddress)] + san.get_values_for_type(x509.DNSName)


def webhook_url(host: str, port: int = DEFAULT_PORT) -> str:
    h = f"[{host}]" if ":" in host else host
    return f"https://{h}:{port}/audit"


def webhook_kubeconfig(url: str, ca_pem: bytes, client_cert_pem: bytes | None = None,
                       client_key_pem: bytes | None = None) -> str:
    """The kubeconfig kube-apiserver reads with --audit-webhook-config-file (YAML; values
    JSON-quoted, which YAML reads as the same strings)."""
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    q = json.dumps
    lines = [
        "# written by kaudit: kube-apiserver's audit webhook backend (--audit-webhook-config-file)",
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        "- name: kaudit-webhook",
        "  cluster:",
        f"    server: {q(url)}",
        f"    certificate-authority-data: {q(b64(ca_pem))}",
        "contexts:",
        "- name: kaudit-webhook",
        "  context:",
        "    cluster: kaudit-webhook",
        "    user: kube-apiserver",
        "current-context: kaudit-webhook",
        "users:",
        "- name: kube-apiserver",
    ]
    if client_cert_pem and client_key_pem:
        lines += ["  user:", f"    client-certificate-data: {q(b64(client_cert_pem))}",
                  f"    client-key-data: {q(b64(client_key_pem))}"]
    else:
        lines += ["  user: {}"]
    return "\n".join(lines) + "\n"
