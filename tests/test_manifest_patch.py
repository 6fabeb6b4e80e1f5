"""The manifest patch as pure code: golden files, idempotence, --remove round trips,
kubeadm's ordering, and a clear error for each kind of bad input.

tests/data/manifests/*.yaml are manifests as kubeadm 1.26-1.36 writes them (FACTS.md
§2.1, §7) plus hand-written shapes; expected/ holds the reviewed patch results.
The structural checks read the output with ruamel's safe loader, independently of
the patcher's own parsing.
"""

from __future__ import annotations

import io
import re

import pytest
from ruamel.yaml import YAML

from kaudit.core.manifest import (
    AuditSpec,
    ManifestError,
    audit_flags_in,
    manifest_diff,
    patch_manifest,
    unpatch_manifest,
)

from conftest import DATA

MANIFESTS = DATA / "manifests"
SEED_POLICY = "/etc/kubernetes/manifests/audit-policy.yaml"
SEED_SPEC = AuditSpec(policy_path=SEED_POLICY)

# Manifests that carry no audit configuration: their patch only adds lines, and
# --remove gives the input back byte for byte.
FRESH = [
    "kubeadm-1.26.yaml",
    "kubeadm-1.29-rhel.yaml",
    "kubeadm-1.33.yaml",
    "kubeadm-1.36.yaml",
    "kubeadm-1.36-ipv6.yaml",
    "args-style.yaml",
]
# Manifests that already carry some audit flags or volumes with other values.
PREPATCHED = ["kubeadm-1.36-extraargs.yaml", "human-edited.yaml", "seed.yaml"]
ALL = FRESH + PREPATCHED

CUSTOM = AuditSpec(
    log_path="/var/log/audit/kube/audit.log",
    policy_path="/etc/kubernetes/audit/policy.yaml",
    maxsize=200,
    maxbackup=3,
    maxage=30,
    extra_flags=(("audit-log-format", "json"), ("audit-log-compress", "true")),
)


def read(name: str) -> str:
    return (MANIFESTS / name).read_text()


def load(text: str) -> dict:
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def apiserver(pod: dict) -> dict:
    return next(c for c in pod["spec"]["containers"] if c["name"] == "kube-apiserver")


def flag_items(container: dict) -> list[str]:
    return [a for a in container.get("command", []) + container.get("args", []) if a.startswith("--")]


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    body = [line for line in diff.splitlines() if not line.startswith(("+++", "---"))]
    return [line[1:] for line in body if line.startswith("+")], [line[1:] for line in body if line.startswith("-")]


# -- golden ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_patch_matches_golden_file(name):
    assert patch_manifest(read(name), AuditSpec()) == (MANIFESTS / "expected" / name).read_text()


def test_patch_with_every_override_matches_golden_file():
    assert patch_manifest(read("args-style.yaml"), CUSTOM) == (MANIFESTS / "expected" / "args-style.custom.yaml").read_text()


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("spec", [AuditSpec(), CUSTOM, SEED_SPEC], ids=["default", "custom", "seed-path"])
def test_patch_is_idempotent(name, spec):
    once = patch_manifest(read(name), spec)
    assert patch_manifest(once, spec) == once


@pytest.mark.parametrize("name", FRESH)
@pytest.mark.parametrize("spec", [AuditSpec(), CUSTOM, SEED_SPEC], ids=["default", "custom", "seed-path"])
def test_remove_restores_a_fresh_manifest_byte_for_byte(name, spec):
    original = read(name)
    assert unpatch_manifest(patch_manifest(original, spec), spec) == original


@pytest.mark.parametrize("name", FRESH)
def test_fresh_manifest_diff_only_adds_lines(name):
    original = read(name)
    added, removed = changed_lines(manifest_diff(original, patch_manifest(original, AuditSpec()), "a", "b"))
    assert removed == []
    # 5 flags + 2 mounts (3 + 2 lines) + 2 volumes (4 lines each)
    assert len(added) == 5 + 5 + 8


@pytest.mark.parametrize("name", PREPATCHED)
def test_remove_takes_every_audit_setting_out_of_a_prepatched_manifest(name):
    spec = AuditSpec()
    patched = patch_manifest(read(name), spec)
    removed = unpatch_manifest(patched, spec)
    assert audit_flags_in(removed) == {}
    pod = load(removed)
    names = {m["name"] for m in apiserver(pod).get("volumeMounts", [])} | {v["name"] for v in pod["spec"]["volumes"]}
    assert not names & {"audit", "audit-log"}
    assert unpatch_manifest(removed, spec) == removed
    assert removed == unpatch_manifest(read(name), spec)


# -- what the patch says -------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("spec", [AuditSpec(), CUSTOM], ids=["default", "custom"])
def test_patched_pod_carries_flags_mounts_and_volumes(name, spec):
    pod = load(patch_manifest(read(name), spec))
    container = apiserver(pod)
    flags = {}
    for item in flag_items(container):
        key, _, value = item[2:].partition("=")
        assert key not in flags, f"--{key} duplicated"
        flags[key] = value
    for key, value in spec.flags().items():
        assert flags[key] == value
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert len(mounts) == len(container["volumeMounts"]), "a mountPath is mounted twice"
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert len(volumes) == len(pod["spec"]["volumes"]), "a volume name is used twice"
    policy = mounts[spec.policy_path]
    assert policy["readOnly"] is True
    assert volumes[policy["name"]]["hostPath"] == {"path": spec.policy_path, "type": "File"}
    log = mounts[spec.log_dir]
    assert log.get("readOnly", False) is False
    assert volumes[log["name"]]["hostPath"] == {"path": spec.log_dir, "type": "DirectoryOrCreate"}


@pytest.mark.parametrize("name", FRESH)
def test_flags_volumes_and_mounts_stay_sorted_by_name(name):
    container_before = apiserver(load(read(name)))
    pod = load(patch_manifest(read(name), CUSTOM))
    container = apiserver(pod)
    flags = [f[2:].partition("=")[0] for f in flag_items(container)]
    assert flags == sorted(flags)
    mount_names = [m["name"] for m in container["volumeMounts"]]
    before = [m["name"] for m in container_before["volumeMounts"]]
    if before == sorted(before):  # kubeadm's own; a hand-written list keeps its order
        assert mount_names == sorted(mount_names)
    volume_names = [v["name"] for v in pod["spec"]["volumes"]]
    before = [v["name"] for v in load(read(name))["spec"]["volumes"]]
    if before == sorted(before):
        assert volume_names == sorted(volume_names)
    assert name == "args-style.yaml" or mount_names == sorted(mount_names)  # kubeadm's are all sorted


def test_kubeadm_extra_args_stay_after_the_sorted_defaults():
    # kubeadm v1beta4 appends extraArgs after its sorted defaults (FACTS §7): new flags go
    # among the defaults, and the extraArgs that were already there are updated where they are.
    original = read("kubeadm-1.36-extraargs.yaml")
    flags = [f[2:].partition("=")[0] for f in flag_items(apiserver(load(patch_manifest(original, AuditSpec()))))]
    tail = flags[flags.index("tls-private-key-file") + 1 :]
    assert tail == ["audit-log-path", "audit-log-maxage", "event-ttl"]
    head = flags[: flags.index("tls-private-key-file") + 1]
    assert head == sorted(head) and "audit-policy-file" in head


def test_existing_audit_flags_and_volume_are_updated_in_place():
    original = read("kubeadm-1.36-extraargs.yaml")
    assert audit_flags_in(original) == {"audit-log-path": "/var/log/kubernetes/audit/audit.log", "audit-log-maxage": "30"}
    added, removed = changed_lines(manifest_diff(original, patch_manifest(original, AuditSpec()), "a", "b"))
    assert "    - --audit-log-path=/var/log/kubernetes/audit/audit.log" in removed
    assert "    - --audit-log-maxage=30" in removed
    assert "    - --audit-log-maxage=7" in added
    assert "    - mountPath: /var/log/kubernetes/audit" in removed
    assert "      path: /var/log/kubernetes/audit" in removed
    assert sum(1 for line in added if "audit-log-path" in line) == 1


def test_ipv6_endpoint_annotation_keeps_its_quotes():
    patched = patch_manifest(read("kubeadm-1.36-ipv6.yaml"), AuditSpec())
    assert "advertise-address.endpoint: '[fd00:10::15]:6443'\n" in patched
    assert load(patched)["metadata"]["annotations"][
        "kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"
    ] == "[fd00:10::15]:6443"


def test_v136_shape_keeps_named_probe_port_and_gets_no_creation_timestamp():
    patched = patch_manifest(read("kubeadm-1.36.yaml"), AuditSpec())
    assert "creationTimestamp" not in patched
    assert patched.count("port: probe-port") == 3
    assert "creationTimestamp: null" in patch_manifest(read("kubeadm-1.26.yaml"), AuditSpec())


def test_args_style_gets_its_flags_under_args_with_its_own_indentation():
    patched = patch_manifest(read("args-style.yaml"), AuditSpec())
    container = apiserver(load(patched))
    assert "command" not in container
    assert "--audit-log-maxage=7" in container["args"]
    assert "        - --audit-log-maxage=7\n" in patched  # indented list style kept
    assert "        - mountPath: /etc/kubernetes/audit-policy.yaml\n" in patched


def test_command_plus_args_puts_new_flags_into_args():
    text = (
        "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - args:\n    - --secure-port=6443\n"
        "    command:\n    - kube-apiserver\n    name: kube-apiserver\n"
    )
    container = apiserver(load(patch_manifest(text, AuditSpec())))
    assert container["command"] == ["kube-apiserver"]
    assert "--audit-policy-file=/etc/kubernetes/audit-policy.yaml" in container["args"]


def test_human_edits_survive_comments_quotes_blank_lines():
    original = read("human-edited.yaml")
    patched = patch_manifest(original, AuditSpec())
    comments = [line for line in original.splitlines() if "#" in line and "audit" not in line]
    for line in comments:
        assert line in patched.splitlines()
    assert '    - "--authorization-mode=Node,RBAC"\n' in patched
    # the flag with another value is changed in place and its comment stays on its line
    assert "    - --audit-log-maxsize=100   # ops: bigger files, fewer rotations\n" in patched
    # a new mount does not come between a comment and the mount it describes
    assert "    # CA bundles from the host\n    - mountPath: /etc/ssl/certs\n" in patched


def test_seed_manifest_is_already_patched_for_the_seed_policy_path():
    seed = read("seed.yaml")
    assert patch_manifest(seed, SEED_SPEC) == seed
    added, removed = changed_lines(manifest_diff(seed, patch_manifest(seed, AuditSpec()), "a", "b"))
    assert added == [line.replace(SEED_POLICY, "/etc/kubernetes/audit-policy.yaml") for line in removed]
    assert len(added) == len(removed) == 3
    assert all(SEED_POLICY in line for line in removed)
    assert all("/etc/kubernetes/audit-policy.yaml" in line for line in added)


def test_removing_the_seed_patch_gives_back_kubeadms_manifest():
    assert unpatch_manifest(read("seed.yaml"), SEED_SPEC) == read("kubeadm-1.33.yaml")


def test_mount_of_the_same_path_under_another_name_is_adopted_not_duplicated():
    original = read("kubeadm-1.33.yaml").replace(
        "    volumeMounts:\n", "    volumeMounts:\n    - mountPath: /etc/kubernetes/audit-policy.yaml\n      name: audit-policy\n"
    ).replace(
        "  volumes:\n", "  volumes:\n  - hostPath:\n      path: /etc/kubernetes/audit-policy.yaml\n      type: FileOrCreate\n    name: audit-policy\n"
    )
    patched = patch_manifest(original, AuditSpec())
    pod = load(patched)
    mounts = [m for m in apiserver(pod)["volumeMounts"] if m["mountPath"] == "/etc/kubernetes/audit-policy.yaml"]
    assert mounts == [{"mountPath": "/etc/kubernetes/audit-policy.yaml", "name": "audit-policy", "readOnly": True}]
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == "audit-policy")
    assert volume["hostPath"]["type"] == "File"
    assert not any(v["name"] == "audit" for v in pod["spec"]["volumes"])


def test_read_only_log_mount_is_made_writable_in_place():
    original = read("kubeadm-1.36-extraargs.yaml").replace(
        "    - mountPath: /var/log/kubernetes/audit\n      name: audit-log\n",
        "    - mountPath: /var/log/kubernetes/audit\n      name: audit-log\n      readOnly: true\n",
    )
    patched = patch_manifest(original, AuditSpec())
    mount = next(m for m in apiserver(load(patched))["volumeMounts"] if m["name"] == "audit-log")
    assert mount == {"mountPath": "/var/log/kubernetes-audit", "name": "audit-log", "readOnly": False}


# -- other layouts ---------------------------------------------------------------------


MINIMAL_FLOW = """apiVersion: v1
kind: Pod
metadata:
  name: kube-apiserver
spec:
  containers:
  - command: ["kube-apiserver", "--secure-port=6443"]
    image: registry.k8s.io/kube-apiserver:v1.32.0
    name: kube-apiserver
  hostNetwork: true
  volumes: []
"""


def test_flow_sequences_and_missing_volume_mounts():
    patched = patch_manifest(MINIMAL_FLOW, AuditSpec())
    container = apiserver(load(patched))
    assert container["command"][0] == "kube-apiserver"
    assert container["command"][-1] == "--secure-port=6443"
    assert [m["name"] for m in container["volumeMounts"]] == ["audit", "audit-log"]
    assert [v["name"] for v in load(patched)["spec"]["volumes"]] == ["audit", "audit-log"]
    assert patch_manifest(patched, AuditSpec()) == patched
    assert unpatch_manifest(patched, AuditSpec()) == MINIMAL_FLOW


def test_no_final_newline_and_crlf_are_kept():
    spec = AuditSpec()
    no_newline = read("kubeadm-1.36.yaml").rstrip("\n")
    patched = patch_manifest(no_newline, spec)
    assert not patched.endswith("\n")
    assert unpatch_manifest(patched, spec) == no_newline
    crlf = read("kubeadm-1.36.yaml").replace("\n", "\r\n")
    patched = patch_manifest(crlf, spec)
    assert "\n" not in patched.replace("\r\n", "")
    assert unpatch_manifest(patched, spec) == crlf


def test_values_that_need_quotes_are_quoted():
    spec = AuditSpec(extra_flags=(("audit-webhook-config-file", "/etc/kubernetes/audit webhook.yaml"),))
    patched = patch_manifest(read("kubeadm-1.33.yaml"), spec)
    assert "    - '--audit-webhook-config-file=/etc/kubernetes/audit webhook.yaml'\n" in patched
    assert audit_flags_in(patched)["audit-webhook-config-file"] == "/etc/kubernetes/audit webhook.yaml"


def test_manifest_diff():
    assert manifest_diff("a\n", "a\n", "x", "y") == ""
    diff = manifest_diff("a\n", "a\nb", "x", "y")
    assert diff.startswith("--- x\n+++ y\n")
    assert "\\ No newline at end of file" in diff


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,message",
    [
        ("apiVersion: v1\nkind: Pod\nspec: [\n", r"^m\.yaml:4:1: not valid YAML"),
        ("apiVersion: v1\n\tkind: Pod\n", r"^m\.yaml:2:1: not valid YAML"),
        ("kind: Pod\n---\nkind: Pod\n", r"^m\.yaml:3: holds 2 YAML documents"),
        ("", r"^m\.yaml: is empty"),
        ("- a\n- b\n", r"^m\.yaml:1:1: not a Pod"),
        ("apiVersion: apps/v1\nkind: Deployment\n", r"^m\.yaml:2:7: not a Pod \(kind is 'Deployment'\)"),
        (
            "kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd]\n",
            r"^m\.yaml:4:3: spec\.containers has no container named kube-apiserver \(found: etcd\)",
        ),
        ("kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    image: x\n", r"spec\.containers\[0\]: has neither command: nor args:"),
        (
            "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n"
            "    - --audit-log-maxage=1\n    - --audit-log-maxage=2\n",
            r"^m\.yaml:8:7: spec\.containers\[0\]: --audit-log-maxage appears twice",
        ),
        (
            "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver]\n"
            "  volumes:\n  - name: audit\n    emptyDir: {}\n",
            r"^m\.yaml:7:5: spec\.volumes\[0\] \(audit\) is not a hostPath volume",
        ),
        (
            "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n"
            "    - --audit-log-path\n    - /var/log/a.log\n",
            r"^m\.yaml:7:7: spec\.containers\[0\]\.command\[1\]: --audit-log-path has its value in the next list item",
        ),
        ("kind: Pod\nspec: {}\nkind: Pod\n", r"^m\.yaml:3:1: duplicate key 'kind'"),
        (
            "kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: [kube-apiserver]\n    volumeMounts: x\n",
            r"^m\.yaml:6:19: spec\.containers\[0\]\.volumeMounts: not a list",
        ),
        ("kind: Pod\nspec:\n  containers:\n  - name: kube-apiserver\n    command: 5\n", r"^m\.yaml:5:14: spec\.containers\[0\]\.command: not a list"),
        ("kind: Pod\nspec: 3\n", r"^m\.yaml: spec: missing or not a mapping"),
    ],
    ids=["yaml", "tab", "two-docs", "empty", "list", "deployment", "no-apiserver", "no-command", "dup-flag", "not-hostpath",
         "separate-value", "duplicate-key", "mounts-not-list", "command-not-list", "spec-not-mapping"],
)
def test_bad_input_names_the_problem_and_where(text, message):
    with pytest.raises(ManifestError) as e:
        patch_manifest(text, AuditSpec(), source="m.yaml")
    assert re.search(message, e.value.message), e.value.message
    assert "\n" not in e.value.message


def test_spec_flags_and_log_dir():
    spec = AuditSpec(extra_flags=(("--audit-log-format", "json"),))
    assert spec.flags() == {
        "audit-log-path": "/var/log/kubernetes-audit/audit.log",
        "audit-policy-file": "/etc/kubernetes/audit-policy.yaml",
        "audit-log-maxsize": "100",
        "audit-log-maxbackup": "10",
        "audit-log-maxage": "7",
        "audit-log-format": "json",
    }
    assert spec.log_dir == "/var/log/kubernetes-audit"


AWKWARD = AuditSpec(
    policy_path="/etc/k8s/audit #1.yaml",
    log_path="/var/log/kübe audit/a: b.log",
    extra_flags=(("audit-log-mode", "batch"), ("audit-log-batch-max-wait", "5s"), ("audit-log-compress", "true")),
)


@pytest.mark.parametrize("name", ALL)
def test_awkward_values_are_quoted_and_read_back_exactly(name):
    patched = patch_manifest(read(name), AWKWARD)
    assert patch_manifest(patched, AWKWARD) == patched
    pod = load(patched)
    container = apiserver(pod)
    assert "--audit-policy-file=/etc/k8s/audit #1.yaml" in flag_items(container)
    assert "--audit-log-path=/var/log/kübe audit/a: b.log" in flag_items(container)
    assert "--audit-log-compress=true" in flag_items(container)
    assert {"mountPath": "/var/log/kübe audit", "name": "audit-log"} in container["volumeMounts"]
    if name in FRESH:
        assert unpatch_manifest(patched, AWKWARD) == read(name)


def test_audit_mounts_in_reports_mounts_and_volumes_by_name():
    from kaudit.core.manifest import audit_mounts_in

    table = audit_mounts_in(patch_manifest(read("kubeadm-1.36.yaml"), AuditSpec()))
    assert table["audit"] == {
        "mountPath": "/etc/kubernetes/audit-policy.yaml", "readOnly": "true",
        "hostPath": "/etc/kubernetes/audit-policy.yaml", "type": "File",
    }
    assert table["audit-log"] == {
        "mountPath": "/var/log/kubernetes-audit", "readOnly": None,
        "hostPath": "/var/log/kubernetes-audit", "type": "DirectoryOrCreate",
    }
    assert "audit" not in audit_mounts_in(read("kubeadm-1.36.yaml"))
