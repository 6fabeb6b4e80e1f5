"""What kaudit writes for kube-apiserver, given to a real kube-apiserver v1.36.

- The audit flags `kaudit up` patches into kubeadm's manifest, with each packaged policy
  profile at the path the manifest mounts: the apiserver starts and logs a request where
  the flags say, at the level the policy says.
- Every policy of test_policy.INVALID_POLICIES goes through `kaudit policy validate` and
  through the apiserver: every policy the apiserver refuses, kaudit refuses, naming the
  same field. kaudit is stricter in one way, on purpose: unknown fields and duplicate keys
  (KAUDIT_STRICTER). The apiserver loads those "leniently" (a warning in its own log) and
  drops the field, so a typo such as `resource:` turns a narrow rule into a catch-all.

Needs kube-apiserver (KAUDIT_KUBE_APISERVER or PATH), etcd and kubectl; skipped otherwise.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import DATA
from kaudit.core.manifest import AuditSpec, audit_flags_in, audit_mounts_in, patch_manifest
from kaudit.core.policy import check_policy, policy_text
from kaudit.core.policy_eval import evaluate, load_policy, request_from_event
from real_apiserver import free_port, require_binaries, start
from test_policy import INVALID_IDS, INVALID_POLICIES

#: refused by kaudit, loaded by kube-apiserver with a warning and the field dropped
KAUDIT_STRICTER = {"typo-resource", "typo-omitStage", "policy-field", "groupresources-field", "resourceName", "duplicate-key"}


def _on_node(node: Path, mounts: dict, path: str) -> Path:
    """Where a path inside the apiserver container is on the node (the hostPath it mounts)."""
    for m in sorted(mounts.values(), key=lambda m: -len(m["mountPath"] or "")):
        mp = m["mountPath"]
        if mp and (path == mp or path.startswith(mp.rstrip("/") + "/")):
            return node / (m["hostPath"] + path[len(mp):]).lstrip("/")
    raise AssertionError(f"{path} is not under any mount of the patched manifest")


@pytest.mark.parametrize("profile", ["gce", "gce-modern"])
def test_kaudit_s_flags_and_policy_run_a_real_apiserver(profile, tmp_path):
    patched = patch_manifest((DATA / "manifests" / "kubeadm-1.36.yaml").read_text(), AuditSpec(), source="kubeadm-1.36.yaml")
    flags, mounts = audit_flags_in(patched), audit_mounts_in(patched)
    node = tmp_path / "node"
    policy_file = _on_node(node, mounts, flags["audit-policy-file"])
    policy_file.parent.mkdir(parents=True, exist_ok=True)
    policy_file.write_text(policy_text(profile))
    log = _on_node(node, mounts, flags["audit-log-path"])
    log.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(f"--{k}={_on_node(node, mounts, v) if v.startswith('/') else v}" for k, v in flags.items())
    assert {"--audit-log-maxsize=100", "--audit-log-maxbackup=10", "--audit-log-maxage=7"} <= set(args)

    api = start(tmp_path / "apiserver", extra_args=args)
    try:
        api.kubectl("get", "namespaces", "kube-system")
        api.kubectl("create", "configmap", "probe", "-n", "default", "--from-literal=k=v")
    finally:
        api.stop()
    policy = load_policy(policy_text(profile), profile)
    ours = [e for e in map(json.loads, log.read_text().splitlines()) if (e.get("userAgent") or "").startswith("kubectl/")]
    assert {(e["verb"], e["objectRef"]["resource"]) for e in ours if e.get("objectRef")} >= {("get", "namespaces"), ("create", "configmaps")}
    for e in ours:
        assert e["level"] == evaluate(policy, request_from_event(e)).level


def _apiserver_verdicts(tmp_path: Path) -> dict[str, tuple[bool, str]]:
    """id -> (refused, the apiserver's reason or warning), every policy in parallel: a refusal
    comes before the apiserver needs etcd; an accepted policy runs until etcd (unreachable) fails it."""
    apiserver, _etcd = require_binaries()
    subprocess.run(["openssl", "genrsa", "-out", str(tmp_path / "sa.key"), "2048"], check=True, capture_output=True)
    procs = {}
    for cid, (text, _message) in zip(INVALID_IDS, INVALID_POLICIES):
        (tmp_path / f"{cid}.yaml").write_text(text)
        procs[cid] = subprocess.Popen(
            [apiserver, f"--audit-policy-file={tmp_path / f'{cid}.yaml'}", f"--audit-log-path={tmp_path / f'{cid}.log'}",
             "--etcd-servers=http://127.0.0.1:1", "--service-account-issuer=https://kubernetes.default.svc",
             f"--service-account-key-file={tmp_path / 'sa.key'}", f"--service-account-signing-key-file={tmp_path / 'sa.key'}",
             f"--cert-dir={tmp_path / ('certs-' + cid)}", "--bind-address=127.0.0.1", f"--secure-port={free_port()}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = {}
    for cid, p in procs.items():
        try:
            _, err = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        refused = re.search(r'loading audit policy file: (.*?)(?:: from file |"$)', err, re.M)
        lenient = re.search(r"falling back to lenient decoding: (.*(?:\n\s+.*)*)", err)
        out[cid] = (True, refused.group(1)) if refused else (False, lenient.group(1) if lenient else "")
    return out


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory):
    return _apiserver_verdicts(tmp_path_factory.mktemp("policies"))


def _path(problem: str) -> str:
    """kaudit's problem 'p.yaml:5:5: rules[1].level: unknown ...' -> 'rules[1].level'."""
    m = re.match(r"^[^:]+(?::\d+:\d+)?: ([^\s:]+):", problem)
    return m.group(1).removeprefix("policy.") if m else ""


def _apiserver_path(reason: str) -> str:
    """'rules[1].resources.group: Invalid value ...' -> 'rules[1].resources.group' ('' when none)."""
    m = re.match(r"^\[?((?:[A-Za-z]+(?:\[\d+\])?\.)*[A-Za-z]+(?:\[\d+\])?): (?:Unsupported|Required|Invalid)", reason)
    return m.group(1) if m else ""


def test_every_policy_the_apiserver_refuses_kaudit_refuses_for_the_same_field(verdicts):
    assert {cid for cid, (refused, _) in verdicts.items() if not refused} == KAUDIT_STRICTER
    named = 0
    for cid, (text, _message) in zip(INVALID_IDS, INVALID_POLICIES):
        problems, _ = check_policy(text, "p.yaml")
        assert problems, f"{cid}: kaudit accepts what the apiserver {'refuses' if verdicts[cid][0] else 'warns about'}"
        refused, reason = verdicts[cid]
        where = _apiserver_path(reason) if refused else ""
        if where:
            # the apiserver drops the index of resources[]; kaudit may name the rule that holds the field
            where = re.sub(r"resources\[\d+\]", "resources", where)
            ours = [re.sub(r"resources\[\d+\]", "resources", _path(p)) for p in problems]
            assert any(o and (where == o or where.startswith(o + ".")) for o in ours), (cid, reason, problems)
            named += 1
    assert named >= 10, named


def test_what_the_apiserver_loads_leniently_kaudit_names(verdicts):
    """The apiserver's warning and kaudit's error point at the same unknown field."""
    for cid, (text, _message) in zip(INVALID_IDS, INVALID_POLICIES):
        if cid not in KAUDIT_STRICTER:
            continue
        _, warning = verdicts[cid]
        problems, _ = check_policy(text, "p.yaml")
        unknown = re.search(r'unknown field "([^"]+)"', warning)
        if unknown:
            assert any(_path(p) == unknown.group(1) and "unknown field" in p for p in problems), (cid, warning, problems)
        else:
            assert "already set in map" in warning and any("duplicate key" in p for p in problems), (cid, warning, problems)
