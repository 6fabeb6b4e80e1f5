"""Persisting the audit settings in kube-system/kubeadm-config (v1beta3 map, v1beta4 list),
as a pure transform and through `kaudit up` against the kubectl double."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from kaudit.core.kubeadm_config import KubeadmConfigError, audit_args, persist_audit, unpersist_audit
from kaudit.core.manifest import AuditSpec
from upnode import DATA, kube_node  # noqa: F401  (fixture)

V3 = (DATA / "up/ClusterConfiguration-v1beta3.yaml").read_text()
V4 = (DATA / "up/ClusterConfiguration-v1beta4.yaml").read_text()
SPEC = AuditSpec()


def load(text):
    return YAML(typ="safe").load(text)


def test_v1beta4_extra_args_are_a_list_of_name_value():
    out = load(persist_audit(V4, SPEC))
    args = out["apiServer"]["extraArgs"]
    assert isinstance(args, list)
    assert {"name": "audit-policy-file", "value": "/etc/kubernetes/audit-policy.yaml"} in args
    assert {"name": "audit-log-maxsize", "value": "100"} in args  # strings, as kubeadm wants
    vols = {v["name"]: v for v in out["apiServer"]["extraVolumes"]}
    assert vols["audit"] == {"name": "audit", "hostPath": "/etc/kubernetes/audit-policy.yaml",
                             "mountPath": "/etc/kubernetes/audit-policy.yaml", "readOnly": True, "pathType": "File"}
    assert vols["audit-log"]["hostPath"] == "/var/log/kubernetes-audit" and vols["audit-log"]["readOnly"] is False


def test_v1beta3_extra_args_are_a_map_and_other_keys_are_kept():
    text = persist_audit(V3, SPEC)
    out = load(text)
    args = out["apiServer"]["extraArgs"]
    assert isinstance(args, dict)
    assert args["authorization-mode"] == "Node,RBAC"
    assert args["audit-log-path"] == "/var/log/kubernetes-audit/audit.log"
    assert out["apiServer"]["certSANs"] == ["192.168.5.15"]
    assert audit_args(text) == SPEC.flags()


@pytest.mark.parametrize("text", [V3, V4], ids=["v1beta3", "v1beta4"])
def test_persist_is_idempotent_and_unpersist_restores_the_text(text):
    once = persist_audit(text, SPEC)
    assert once != text
    assert persist_audit(once, SPEC) == once
    assert unpersist_audit(once, SPEC) == text
    assert unpersist_audit(text, SPEC) == text


def test_changed_value_is_updated_in_place_not_duplicated():
    once = persist_audit(V4, SPEC)
    twice = persist_audit(once, AuditSpec(maxage=30))
    args = load(twice)["apiServer"]["extraArgs"]
    assert [a["value"] for a in args if a["name"] == "audit-log-maxage"] == ["30"]


def test_unknown_api_version_is_refused_with_a_hint():
    with pytest.raises(KubeadmConfigError) as e:
        persist_audit(V4.replace("v1beta4", "v1alpha9"), SPEC)
    assert "v1alpha9" in e.value.message and "--no-persist" in e.value.hint


def _up(cli, node, *extra):
    return cli(["up", "--host", "local", "--rootfs", node.root, "--only", "policy,apiserver,persist", "--wait-timeout", "5s", *extra])


@pytest.mark.parametrize("name,text", [("v1beta3", V3), ("v1beta4", V4)])
def test_up_persists_into_the_configmap_once(kube_node, cli, name, text):
    kube_node.set_cluster_configuration(text)

    r = _up(cli, kube_node)

    assert r.code == 0, r.err
    stored = kube_node.cluster_configuration()
    assert stored == persist_audit(text, SPEC)
    assert f"kube-system/kubeadm-config (ClusterConfiguration, kubeadm.k8s.io/{name})" in r.err
    cm = kube_node.state()["configmaps"]["kube-system/kubeadm-config"]
    assert cm["metadata"]["resourceVersion"] == "229"  # replaced once, at the version read

    r2 = _up(cli, kube_node)
    assert r2.code == 0
    assert "already records the audit flags" in r2.err
    assert kube_node.state()["configmaps"]["kube-system/kubeadm-config"]["metadata"]["resourceVersion"] == "229"


def test_no_persist_leaves_the_configmap(kube_node, cli):
    kube_node.set_cluster_configuration(V4)
    r = _up(cli, kube_node, "--no-persist")
    assert r.code == 0, r.err
    assert kube_node.cluster_configuration() == V4
    assert "--no-persist" in r.err
    assert not any(c[0] == "replace" for c in kube_node.calls())


def test_dry_run_shows_the_configmap_diff_and_replaces_nothing(kube_node, cli):
    kube_node.set_cluster_configuration(V4)
    r = _up(cli, kube_node, "--dry-run")
    assert r.code == 0, r.err
    assert "--- kube-system/kubeadm-config ClusterConfiguration\n" in r.out
    assert "+  - name: audit-log-path\n" in r.out
    assert kube_node.cluster_configuration() == V4
    assert all(c[0] == "get" for c in kube_node.calls())


def test_no_kubeadm_config_is_skipped(kube_node, cli):
    r = _up(cli, kube_node)
    assert r.code == 0, r.err
    assert "no ConfigMap kube-system/kubeadm-config" in r.err
