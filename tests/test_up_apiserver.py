"""`kaudit up` on a kubeadm-shaped tree (--host local --rootfs): policy and apiserver
phases end to end against the scripted kubelet (tests/doubles/kubesim.py)."""

from __future__ import annotations

import os

from upnode import AUDIT_LOG, MANIFEST, POLICY, kube_node, snapshot  # noqa: F401  (fixture)

NODE_PHASES = "preflight,policy,apiserver"


def up(cli, node, *extra):
    return cli(["up", "--host", "local", "--rootfs", node.root, "--only", NODE_PHASES, "--wait-timeout", "5s", *extra])


def backups(root):
    tmp = root / "etc/kubernetes/tmp"
    return sorted(tmp.iterdir()) if tmp.exists() else []


def test_restart_sequence_is_waited_out_and_succeeds(kube_node, cli):
    kube_node.script(["old-hash", "old-hash", "api-error", "api-error", "not-found", "new-not-ready", "new-not-ready"], after="ready")
    fresh = (kube_node.root / MANIFEST).read_bytes()

    r = up(cli, kube_node)

    assert r.code == 0, r.err
    manifest = (kube_node.root / MANIFEST).read_text()
    assert "--audit-policy-file=/etc/kubernetes/audit-policy.yaml" in manifest
    assert "--audit-log-path=/var/log/kubernetes-audit/audit.log" in manifest
    assert (kube_node.root / AUDIT_LOG).is_file()  # the 'new apiserver' wrote it
    # every scripted step was consumed: kaudit kept polling through hash-unchanged, API errors, NotFound, not Ready
    assert kube_node.node_state()["script"] == []
    assert kube_node.node_state()["running"] != kube_node.node_state()["boot"]
    gets = [c for c in kube_node.calls() if c[0:2] == ["get", "pod"]]
    assert len(gets) >= 8
    assert any(c[0:2] == ["get", "--raw"] and c[2] == "/readyz" for c in kube_node.calls())
    # the wait states its target and timeout
    assert "new config hash, pod Ready, /readyz ok, /var/log/kubernetes-audit/audit.log written; timeout 5s" in r.err
    # backup: original bytes, under /etc/kubernetes/tmp, nothing extra in the manifests dir
    [backup] = backups(kube_node.root)
    assert backup.name.startswith("kaudit-backup-")
    assert (backup / "kube-apiserver.yaml").read_bytes() == fresh
    assert sorted(os.listdir(kube_node.root / "etc/kubernetes/manifests")) == ["kube-apiserver.yaml"]
    assert os.stat(kube_node.root / MANIFEST).st_mode & 0o777 == 0o600


def test_policy_is_written_root_owned_0600_with_parent_created(kube_node, cli):
    r = up(cli, kube_node, "--policy-path", "/etc/kubernetes/audit/policy.yaml", "--policy-profile", "gce-modern")
    assert r.code == 0, r.err
    path = kube_node.root / "etc/kubernetes/audit/policy.yaml"
    st = path.stat()
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0
    from kaudit.core.policy import policy_text

    assert path.read_text() == policy_text("gce-modern")
    assert "--audit-policy-file=/etc/kubernetes/audit/policy.yaml" in (kube_node.root / MANIFEST).read_text()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_second_up_changes_nothing_and_says_so(kube_node, cli):
    assert up(cli, kube_node).code == 0
    before = snapshot(kube_node.root)
    calls = len(kube_node.calls())

    r = up(cli, kube_node)

    assert r.code == 0, r.err
    assert snapshot(kube_node.root) == before
    assert "already configured" in r.err
    assert "nothing changed: everything was already done" in r.err
    for phase in ("preflight", "policy", "apiserver"):
        assert any(line.split()[:2] == [phase, "unchanged"] for line in r.err.splitlines()), r.err
    assert not any(c[0] == "replace" for c in kube_node.calls()[calls:])


def test_never_ready_rolls_back_to_the_original_bytes(kube_node, cli):
    kube_node.script(["api-error"], after="never-ready")
    fresh = (kube_node.root / MANIFEST).read_bytes()

    r = up(cli, kube_node, "--wait-timeout", "1s")

    assert r.code == 1
    assert (kube_node.root / MANIFEST).read_bytes() == fresh
    assert "did not come up within 1s" in r.err and "not Ready" in r.err
    assert "rolled back: the original manifest is restored and the previous apiserver is Ready" in r.err
    assert "hint: " in r.err and "--no-rollback" in r.err
    assert "journalctl -u kubelet -n 20" in r.err and "crictl logs --tail 20" in r.err
    assert "Traceback" not in r.err
    # the old apiserver is serving again
    state = kube_node.node_state()
    assert state["running"] == state["boot"]
    # the backup stays for the record
    [backup] = backups(kube_node.root)
    assert (backup / "kube-apiserver.yaml").read_bytes() == fresh


def test_crash_loop_is_caught_early_rolled_back_and_explained(kube_node, cli):
    kube_node.script(["old-hash", "api-error"], after="crashloop")
    fresh = (kube_node.root / MANIFEST).read_bytes()

    r = up(cli, kube_node, "--wait-timeout", "60s")  # the crash loop is seen long before the timeout

    assert r.code == 1
    assert "crash-looping" in r.err
    assert (kube_node.root / MANIFEST).read_bytes() == fresh
    # the container log's error and the kubelet journal are shown
    assert "loading audit policy file" in r.err
    assert "CrashLoopBackOff" in r.err
    assert "rolled back" in r.err
    assert kube_node.node_state()["running"] == kube_node.node_state()["boot"]


def test_no_rollback_leaves_the_new_manifest(kube_node, cli):
    kube_node.script([], after="never-ready")
    fresh = (kube_node.root / MANIFEST).read_bytes()

    r = up(cli, kube_node, "--wait-timeout", "500ms", "--no-rollback")

    assert r.code == 1
    after = (kube_node.root / MANIFEST).read_bytes()
    assert after != fresh and b"--audit-log-path" in after
    assert "left as it is (--no-rollback)" in r.err
    [backup] = backups(kube_node.root)
    assert f"sudo cp {'/etc/kubernetes/tmp/' + backup.name}/kube-apiserver.yaml /etc/kubernetes/manifests/kube-apiserver.yaml" in r.err


def test_dry_run_writes_nothing_and_prints_the_diff(kube_node, cli):
    before = snapshot(kube_node.root)

    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", NODE_PHASES, "--dry-run"])

    assert r.code == 0, r.err
    assert snapshot(kube_node.root) == before
    assert r.out.startswith("--- /etc/kubernetes/manifests/kube-apiserver.yaml\n")
    assert "+    - --audit-log-path=/var/log/kubernetes-audit/audit.log\n" in r.out
    assert "would write /etc/kubernetes/audit-policy.yaml" in r.err
    assert "would back up /etc/kubernetes/manifests/kube-apiserver.yaml to /etc/kubernetes/tmp/kaudit-backup-" in r.err
    # only reads reached the cluster
    assert all(c[0] == "get" for c in kube_node.calls())


def test_offline_image_no_wait_writes_files_and_backup_without_kubectl(kube_node, cli, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no kubectl, crictl or journalctl anywhere
    fresh = (kube_node.root / MANIFEST).read_bytes()

    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--no-wait", "--only", "policy,apiserver"])

    assert r.code == 0, r.err
    assert (kube_node.root / POLICY).stat().st_mode & 0o777 == 0o600
    text = (kube_node.root / MANIFEST).read_text()
    # paths in the manifest are the node's own, not the rootfs'
    assert "--audit-policy-file=/etc/kubernetes/audit-policy.yaml" in text
    assert str(kube_node.root) not in text
    [backup] = backups(kube_node.root)
    assert (backup / "kube-apiserver.yaml").read_bytes() == fresh
    assert "not waiting (--no-wait)" in r.err
    assert kube_node.calls() == []
    # and diff-manifest reads the same tree: nothing pending
    r2 = cli(["diff-manifest", "--host", "local", "--rootfs", kube_node.root, "--exit-code"])
    assert r2.code == 0 and r2.out == ""


def test_bad_policy_file_fails_before_anything_is_written(kube_node, cli, tmp_path):
    bad = tmp_path / "policy.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n")
    before = snapshot(kube_node.root)

    r = up(cli, kube_node, "--policy-file", bad)

    assert r.code == 1
    assert r.err.count("error: ") == 1 and "Traceback" not in r.err
    assert "[preflight]" in r.err and "level" in r.err
    assert snapshot(kube_node.root) == before


def test_malformed_manifest_is_reported_with_its_position(kube_node, cli):
    path = kube_node.root / MANIFEST
    path.write_text(path.read_text().replace("  hostNetwork: true", "  hostNetwork: [true"))
    before = snapshot(kube_node.root)

    r = up(cli, kube_node)

    assert r.code == 1
    assert "kube-apiserver.yaml:" in r.err and "not valid YAML" in r.err
    assert snapshot(kube_node.root) == before


def test_api_down_before_start_changes_nothing(kube_node, cli):
    # the apiserver is already down when kaudit arrives: preflight refuses
    kube_node.script([], after="api-error")
    (kube_node.root / MANIFEST).write_text((kube_node.root / MANIFEST).read_text())  # same pod
    doc = kube_node.state()
    doc["nodes"][str(kube_node.root)]["running"] = "0" * 32  # what runs is not what the file says
    doc["nodes"][str(kube_node.root)]["boot"] = "0" * 32
    kube_node.save(doc)
    before = snapshot(kube_node.root)

    r = up(cli, kube_node)

    assert r.code == 1
    assert "does not answer /readyz" in r.err and "was refused" in r.err
    assert snapshot(kube_node.root) == before


def test_replaced_policy_restarts_the_apiserver_so_it_loads_it(kube_node, cli):
    assert up(cli, kube_node).code == 0
    first = [c["id"] for c in kube_node.node_state()["containers"] if c["state"] == "CONTAINER_RUNNING"]
    log_lines = len((kube_node.root / AUDIT_LOG).read_text().splitlines())

    r = up(cli, kube_node, "--policy-profile", "gce-modern")

    assert r.code == 0, r.err
    assert "replaced /etc/kubernetes/audit-policy.yaml with the gce-modern profile" in r.err
    assert "restarted kube-apiserver to load the new policy" in r.err
    running = [c for c in kube_node.node_state()["containers"] if c["state"] == "CONTAINER_RUNNING"]
    assert len(running) == 1 and running[0]["id"] not in first
    assert ["stop", first[0]] in kube_node.state()["crictl_calls"]
    assert len((kube_node.root / AUDIT_LOG).read_text().splitlines()) > log_lines
    # the previous policy was backed up next to the manifest backups
    assert any((d / "audit-policy.yaml").is_file() for d in (kube_node.root / "etc/kubernetes/tmp").iterdir())
    # and a third run has nothing left to do
    r3 = up(cli, kube_node, "--policy-profile", "gce-modern")
    assert r3.code == 0 and "nothing changed" in r3.err


def test_policy_that_breaks_the_apiserver_is_put_back(kube_node, cli):
    from kaudit.core.policy import policy_text

    assert up(cli, kube_node).code == 0
    doc = kube_node.state()
    doc["nodes"][str(kube_node.root)]["policy_crash"] = True
    kube_node.save(doc)

    r = up(cli, kube_node, "--policy-profile", "gce-modern", "--wait-timeout", "60s")

    assert r.code == 1
    assert "crash-looping with the new policy" in r.err
    assert "the previous policy is back in /etc/kubernetes/audit-policy.yaml and the apiserver is Ready" in r.err
    assert (kube_node.root / POLICY).read_text() == policy_text("gce")
    assert (kube_node.root / POLICY).stat().st_mode & 0o777 == 0o600
    assert kube_node.node_state()["restarting"] is None


def test_crash_loop_seen_on_the_mirror_pod_when_another_apiserver_answers(kube_node, cli):
    kube_node.script(["api-error"], after="crashloop-ha")
    fresh = (kube_node.root / MANIFEST).read_bytes()

    r = up(cli, kube_node, "--wait-timeout", "60s")

    assert r.code == 1
    assert "crash-looping with the new manifest (CrashLoopBackOff" in r.err
    assert (kube_node.root / MANIFEST).read_bytes() == fresh


def test_an_audit_log_left_from_before_must_grow(kube_node, cli):
    # a log from an earlier run exists; the new apiserver must write to it before up succeeds
    log = kube_node.root / AUDIT_LOG
    log.parent.mkdir(parents=True)
    log.write_text('{"kind":"Event"}\n')
    kube_node.script(["new-not-ready"], after="ready")
    doc = kube_node.state()
    doc["nodes"][str(kube_node.root)]["log_delay"] = 3
    kube_node.save(doc)

    r = cli(["-v", "up", "--host", "local", "--rootfs", kube_node.root, "--only", NODE_PHASES, "--wait-timeout", "5s"])

    assert r.code == 0, r.err
    assert "nothing written to /var/log/kubernetes-audit/audit.log yet" in r.err
    assert len(log.read_text().splitlines()) == 2


def test_no_kubectl_on_the_node_fails_fast_and_changes_nothing(kube_node, cli, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", "policy"]).code == 0
    before = snapshot(kube_node.root)
    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", "apiserver"])  # default 5m timeout
    assert r.code == 1
    assert "kubectl is not installed on the node" in r.err
    assert snapshot(kube_node.root) == before


def test_missing_admin_conf_fails_fast(kube_node, cli):
    (kube_node.root / "etc/kubernetes/admin.conf").unlink()
    assert cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", "policy"]).code == 0
    before = snapshot(kube_node.root)
    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", "apiserver"])
    assert r.code == 1
    assert "no /etc/kubernetes/admin.conf" in r.err
    assert snapshot(kube_node.root) == before


def test_apiserver_alone_refuses_without_the_policy_file_on_the_node(kube_node, cli):
    before = snapshot(kube_node.root)
    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", "apiserver", "--wait-timeout", "5s"])
    assert r.code == 1
    assert "the audit policy /etc/kubernetes/audit-policy.yaml is not on the node" in r.err
    assert "hint: write it first" in r.err
    assert snapshot(kube_node.root) == before


def test_policy_phase_alone_warns_that_the_new_policy_is_not_loaded(kube_node, cli):
    assert up(cli, kube_node).code == 0
    r = cli(["up", "--host", "local", "--rootfs", kube_node.root, "--only", "policy", "--policy-profile", "gce-modern"])
    assert r.code == 0, r.err
    assert "only when it starts; run kaudit up --only policy,apiserver" in r.err
    assert not any(c[0] == "stop" for c in kube_node.state().get("crictl_calls", []))
