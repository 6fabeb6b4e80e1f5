"""--mode webhook|both: the audit webhook flags and the kubeconfig mount, through the same
pure patcher (goldens in tests/data/manifests/expected/*.webhook.yaml, *.both.yaml)."""

from __future__ import annotations

import pytest

from kaudit.core.manifest import AuditSpec, audit_flags_in, audit_mounts_in, manifest_diff, patch_manifest, unpatch_manifest
from conftest import DATA

MANIFESTS = DATA / "manifests"
FRESH = ["kubeadm-1.36.yaml", "kubeadm-1.26.yaml", "args-style.yaml", "kubeadm-1.29-rhel.yaml"]


def read(name: str) -> str:
    return (MANIFESTS / name).read_text()


@pytest.mark.parametrize("mode", ["webhook", "both"])
def test_patch_matches_golden_file(mode):
    assert patch_manifest(read("kubeadm-1.36.yaml"), AuditSpec(mode=mode)) == \
        (MANIFESTS / "expected" / f"kubeadm-1.36.{mode}.yaml").read_text()


@pytest.mark.parametrize("name", FRESH)
@pytest.mark.parametrize("mode", ["webhook", "both"])
def test_webhook_patch_is_idempotent_only_adds_lines_and_is_removed_exactly(name, mode):
    text = read(name)
    spec = AuditSpec(mode=mode)
    once = patch_manifest(text, spec)
    assert patch_manifest(once, spec) == once
    diff = manifest_diff(text, once, "a", "b").splitlines()
    assert not [l for l in diff if l.startswith("-") and not l.startswith("---")]
    assert unpatch_manifest(once, spec) == text
    flags = audit_flags_in(once)
    assert flags["audit-webhook-config-file"] == "/etc/kubernetes/audit-webhook.kubeconfig"
    assert flags["audit-webhook-mode"] == "batch"
    assert ("audit-log-path" in flags) == (mode == "both")
    m = audit_mounts_in(once)["audit-webhook"]
    assert m == {"mountPath": "/etc/kubernetes/audit-webhook.kubeconfig", "readOnly": "true",
                 "hostPath": "/etc/kubernetes/audit-webhook.kubeconfig", "type": "File"}


def test_switching_modes_moves_between_the_goldens():
    fresh = read("kubeadm-1.36.yaml")
    log = patch_manifest(fresh, AuditSpec())
    assert log == (MANIFESTS / "expected" / "kubeadm-1.36.yaml").read_text()
    webhook = patch_manifest(log, AuditSpec(mode="webhook"))
    assert webhook == (MANIFESTS / "expected" / "kubeadm-1.36.webhook.yaml").read_text()  # log backend taken out
    both = patch_manifest(webhook, AuditSpec(mode="both"))
    assert both == (MANIFESTS / "expected" / "kubeadm-1.36.both.yaml").read_text()
    assert patch_manifest(both, AuditSpec()) == log  # back to log: kaudit's webhook taken out
    assert unpatch_manifest(both, AuditSpec()) == fresh  # down in log mode also removes kaudit's webhook


def test_a_webhook_the_user_configured_is_left_alone():
    fresh = read("kubeadm-1.36.yaml")
    theirs = AuditSpec(mode="webhook", webhook_config_path="/etc/falco/audit-webhook.yaml", webhook_volume="falco")
    with_falco = patch_manifest(fresh, theirs)
    ours = patch_manifest(with_falco, AuditSpec())  # kaudit up --mode log
    flags = audit_flags_in(ours)
    assert flags["audit-webhook-config-file"] == "/etc/falco/audit-webhook.yaml"
    assert "falco" in audit_mounts_in(ours)
    assert flags["audit-log-path"] == "/var/log/kubernetes-audit/audit.log"


@pytest.mark.parametrize("version", ["v1beta3", "v1beta4"])
def test_kubeadm_config_follows_the_mode_and_is_cleaned_by_down(version):
    from kaudit.core.kubeadm_config import audit_args, persist_audit, unpersist_audit

    fresh = (DATA / "up" / f"ClusterConfiguration-{version}.yaml").read_text()
    log = persist_audit(fresh, AuditSpec())
    assert "audit-log-path" in audit_args(log)
    webhook = persist_audit(log, AuditSpec(mode="webhook"))
    args = audit_args(webhook)
    assert args["audit-webhook-config-file"] == "/etc/kubernetes/audit-webhook.kubeconfig"
    assert args["audit-webhook-mode"] == "batch"
    assert not any(k.startswith("audit-log-") for k in args)
    assert "audit-webhook" in webhook and "audit-log\n" not in webhook
    assert persist_audit(webhook, AuditSpec(mode="webhook")) == webhook
    assert audit_args(unpersist_audit(webhook, AuditSpec())) == {}  # down (log mode) finds kaudit's webhook too
