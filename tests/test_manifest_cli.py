"""`kaudit patch-manifest` and `kaudit diff-manifest` through the CLI: exit codes,
stdout (data) versus stderr (narrative), atomic in-place writes on real files, and
the node's manifest read through the host seam (--host local --rootfs)."""

from __future__ import annotations

import io
import os
import pty
import select
import stat
import subprocess
import sys

import pytest

from conftest import DATA, REPO

MANIFESTS = DATA / "manifests"
NODE_MANIFEST = "etc/kubernetes/manifests/kube-apiserver.yaml"


def manifest_copy(tmp_path, name="kubeadm-1.36.yaml", mode=0o600):
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text((MANIFESTS / name).read_text())
    path.chmod(mode)
    return path


def expected(name="kubeadm-1.36.yaml"):
    return (MANIFESTS / "expected" / name).read_text()


# -- patch-manifest ----------------------------------------------------------------------


def test_patch_prints_the_patched_manifest_on_stdout_only(cli, tmp_path):
    path = manifest_copy(tmp_path)
    r = cli(["patch-manifest", path])
    assert r.code == 0
    assert r.out == expected()
    assert r.err == ""
    assert path.read_text() == (MANIFESTS / "kubeadm-1.36.yaml").read_text()


def test_patch_reads_stdin(cli, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((MANIFESTS / "kubeadm-1.26.yaml").read_bytes())))
    r = cli(["patch-manifest", "-"])
    assert r.code == 0
    assert r.out == expected("kubeadm-1.26.yaml")


def test_patch_with_every_override(cli, tmp_path):
    path = manifest_copy(tmp_path, "args-style.yaml")
    r = cli([
        "patch-manifest", path,
        "--audit-log-path", "/var/log/audit/kube/audit.log",
        "--policy-path", "/etc/kubernetes/audit/policy.yaml",
        "--audit-log-maxsize", "200", "--audit-log-maxbackup", "3", "--audit-log-maxage", "30",
        "--audit-flag", "audit-log-format=json", "--audit-flag", "--audit-log-compress=true",
    ])
    assert r.code == 0, r.err
    assert r.out == expected("args-style.custom.yaml")


@pytest.mark.parametrize(
    "argv",
    [
        ["--audit-log-maxsize", "200", "--audit-log-maxage", "30"],
        ["--audit-log-maxsize", "200MiB", "--audit-log-maxage", "30d"],
        ["--audit-log-maxsize", "204800KiB", "--audit-log-maxage", "720h"],
    ],
    ids=["bare", "units", "other-units"],
)
def test_size_and_age_take_units_or_kube_apiservers_bare_numbers(cli, tmp_path, argv):
    r = cli(["patch-manifest", manifest_copy(tmp_path), *argv])
    assert r.code == 0, r.err
    assert "    - --audit-log-maxsize=200\n" in r.out
    assert "    - --audit-log-maxage=30\n" in r.out


def test_in_place_is_atomic_keeps_mode_and_is_idempotent(cli, tmp_path):
    path = manifest_copy(tmp_path, mode=0o600)
    r = cli(["patch-manifest", path, "--in-place"])
    assert r.code == 0
    assert r.out == ""
    assert "patched" in r.err
    assert path.read_text() == expected()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["kube-apiserver.yaml"]  # no temp file left behind

    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    r = cli(["patch-manifest", path, "--in-place"])
    assert r.code == 0
    assert "nothing to change" in r.err
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)  # not rewritten


def test_in_place_keeps_another_mode(cli, tmp_path):
    path = manifest_copy(tmp_path, mode=0o640)
    assert cli(["patch-manifest", path, "--in-place"]).code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_remove_in_place_restores_the_original_bytes(cli, tmp_path):
    path = manifest_copy(tmp_path, "kubeadm-1.29-rhel.yaml")
    original = path.read_bytes()
    assert cli(["patch-manifest", path, "--in-place"]).code == 0
    assert path.read_bytes() != original
    r = cli(["patch-manifest", path, "--in-place", "--remove"])
    assert r.code == 0
    assert "removed" in r.err
    assert path.read_bytes() == original


def test_output_file(cli, tmp_path):
    path = manifest_copy(tmp_path)
    out = tmp_path / "out" / "patched.yaml"
    r = cli(["patch-manifest", path, "-o", out])
    assert r.code == 0 and r.out == ""
    assert out.read_text() == expected()


@pytest.mark.parametrize(
    "body,where",
    [
        ("apiVersion: v1\nkind: Pod\nspec: [\n", ":4:1: not valid YAML"),
        ("kind: Pod\n---\nkind: Pod\n", ":3: holds 2 YAML documents"),
        ("apiVersion: apps/v1\nkind: Deployment\n", ":2:7: not a Pod"),
        ("kind: Pod\nspec:\n  containers:\n  - name: etcd\n    command: [etcd]\n", "no container named kube-apiserver"),
    ],
    ids=["yaml", "two-docs", "not-pod", "no-apiserver"],
)
def test_bad_manifest_is_one_error_line_and_nothing_written(cli, tmp_path, body, where):
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text(body)
    out = tmp_path / "out.yaml"
    for argv in (["patch-manifest", path, "--in-place"], ["patch-manifest", path, "-o", out]):
        r = cli(argv)
        assert r.code == 1
        assert r.out == ""
        assert r.err.startswith(f"error: {path}")
        assert where in r.err.splitlines()[0]
        assert "Traceback" not in r.err
        assert path.read_text() == body
        assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["kube-apiserver.yaml"]


def test_unwritable_output_is_an_error_and_the_input_is_untouched(cli, tmp_path):
    path = manifest_copy(tmp_path)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    r = cli(["patch-manifest", path, "-o", blocker / "out.yaml"])
    assert r.code == 1
    assert r.out == ""
    assert "error: " in r.err and "out.yaml" in r.err
    assert "hint: " in r.err
    assert "Traceback" not in r.err
    assert path.read_text() == (MANIFESTS / "kubeadm-1.36.yaml").read_text()


def test_missing_file(cli, tmp_path):
    r = cli(["patch-manifest", tmp_path / "nope.yaml"])
    assert r.code == 1
    assert f"error: cannot read {tmp_path / 'nope.yaml'}" in r.err


@pytest.mark.parametrize(
    "argv,text",
    [
        (["-o", "x.yaml", "--in-place"], "exclude each other"),
        (["--audit-flag", "log-format=json"], "--audit-flag"),
        (["--audit-flag", "audit-log-format"], "NAME=VALUE"),
        (["--audit-flag", "audit-log-path=/x"], "--audit-log-path"),
        (["--audit-log-path", "audit.log"], "absolute"),
        (["--audit-log-path", "/audit.log"], "directory"),
        (["--audit-log-maxage", "-1"], "--audit-log-maxage"),
        (["--audit-log-maxage", "36h"], "whole days"),
        (["--audit-log-maxsize", "1.5MiB"], "whole MiB"),
        (["--audit-log-maxsize", "lots"], "--audit-log-maxsize"),
        (["--audit-log-maxbackup", "-1"], "--audit-log-maxbackup"),
    ],
)
def test_usage_errors_exit_2(cli, tmp_path, argv, text):
    path = manifest_copy(tmp_path)
    r = cli(["patch-manifest", path, *argv])
    assert r.code == 2
    assert r.out == ""
    assert text in r.err


def test_seed_policy_path_is_accepted_with_a_warning(cli, tmp_path):
    path = manifest_copy(tmp_path, "seed.yaml")
    r = cli(["patch-manifest", path, "--policy-path", "/etc/kubernetes/manifests/audit-policy.yaml"])
    assert r.code == 0
    assert r.out == path.read_text()
    assert "warning: --policy-path /etc/kubernetes/manifests/audit-policy.yaml is inside" in r.err


# -- diff-manifest --------------------------------------------------------------------------


def test_diff_shows_added_lines_and_exit_code_3(cli, tmp_path):
    path = manifest_copy(tmp_path)
    r = cli(["diff-manifest", "--manifest", path, "--exit-code"])
    assert r.code == 3
    assert r.out.startswith(f"--- {path}\n+++ {path} (kaudit)\n@@ ")
    assert "+    - --audit-policy-file=/etc/kubernetes/audit-policy.yaml\n" in r.out
    assert "\x1b[" not in r.out  # no colour off a terminal
    assert r.err == ""


def test_diff_without_exit_code_exits_0(cli, tmp_path):
    r = cli(["diff-manifest", "--manifest", manifest_copy(tmp_path)])
    assert r.code == 0
    assert r.out.startswith("--- ")


def test_diff_of_a_patched_manifest_is_empty_and_exits_0(cli, tmp_path):
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text(expected())
    r = cli(["diff-manifest", "--manifest", path, "--exit-code"])
    assert r.code == 0
    assert r.out == ""
    assert "no changes pending" in r.err


def test_diff_honours_the_overrides(cli, tmp_path):
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text(expected())
    r = cli(["diff-manifest", "--manifest", path, "--exit-code", "--audit-log-maxage", "30"])
    assert r.code == 3
    assert "-    - --audit-log-maxage=7\n+    - --audit-log-maxage=30\n" in r.out


def test_diff_remove_shows_what_remove_takes_out(cli, tmp_path):
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text(expected())
    r = cli(["diff-manifest", "--manifest", path, "--remove", "--exit-code"])
    assert r.code == 3
    assert "-    - --audit-log-path=/var/log/kubernetes-audit/audit.log\n" in r.out
    assert not any(line.startswith("+ ") for line in r.out.splitlines())


def test_diff_reads_stdin(cli, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO((MANIFESTS / "kubeadm-1.33.yaml").read_bytes())))
    r = cli(["diff-manifest", "--manifest", "-", "--exit-code"])
    assert r.code == 3
    assert r.out.startswith("--- <stdin>\n")


def test_diff_bad_manifest_is_an_error(cli, tmp_path):
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text("kind: Pod\n---\nkind: Pod\n")
    r = cli(["diff-manifest", "--manifest", path, "--exit-code"])
    assert r.code == 1
    assert r.out == ""
    assert f"error: {path}:3: holds 2 YAML documents" in r.err


def test_diff_reads_the_node_manifest_through_the_host_seam(cli, tmp_path):
    node = tmp_path / "node"
    (node / NODE_MANIFEST).parent.mkdir(parents=True)
    (node / NODE_MANIFEST).write_text((MANIFESTS / "kubeadm-1.36-ipv6.yaml").read_text())
    r = cli(["diff-manifest", "--host", "local", "--rootfs", node, "--exit-code"])
    assert r.code == 3, r.err
    assert r.out.startswith("--- /etc/kubernetes/manifests/kube-apiserver.yaml\n")
    # nothing written on the node
    assert (node / NODE_MANIFEST).read_text() == (MANIFESTS / "kubeadm-1.36-ipv6.yaml").read_text()
    assert os.listdir(node / "etc/kubernetes/manifests") == ["kube-apiserver.yaml"]


def test_diff_of_several_hosts_labels_each_and_exits_3_if_any_is_pending(cli, tmp_path):
    node = tmp_path / "node"
    (node / NODE_MANIFEST).parent.mkdir(parents=True)
    (node / NODE_MANIFEST).write_text((MANIFESTS / "kubeadm-1.36.yaml").read_text())
    r = cli(["diff-manifest", "--host", "local", "--host", "local", "--rootfs", node, "--exit-code"])
    assert r.code == 3, r.err
    labels = [line for line in r.out.splitlines() if line.startswith("--- ")]
    assert len(labels) == 2
    assert all(label.endswith(":/etc/kubernetes/manifests/kube-apiserver.yaml") and "local" in label for label in labels)


def test_diff_node_without_a_manifest_names_host_and_path(cli, tmp_path):
    r = cli(["diff-manifest", "--host", "local", "--rootfs", tmp_path])
    assert r.code == 1
    assert "/etc/kubernetes/manifests/kube-apiserver.yaml" in r.err
    assert "local" in r.err
    assert "hint: " in r.err
    assert r.out == ""


def test_diff_manifest_excludes_host(cli, tmp_path):
    r = cli(["diff-manifest", "--manifest", manifest_copy(tmp_path), "--host", "local"])
    assert r.code == 2


def _run_on_a_tty(argv: list[str]) -> bytes:
    """Run kaudit with stdout on a real pseudo-terminal; return what it printed there."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kaudit", *argv], stdout=slave, stderr=subprocess.PIPE, cwd=REPO
    )
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 20)
            if not ready:
                break
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        proc.wait(timeout=20)
    return b"".join(chunks)


def test_diff_is_coloured_on_a_terminal(tmp_path):
    out = _run_on_a_tty(["diff-manifest", "--manifest", str(manifest_copy(tmp_path))])
    assert b"\x1b[32m+    - --audit-log-maxage=7" in out


def test_python_dash_m_reports_bad_input_without_traceback(tmp_path):
    path = tmp_path / "kube-apiserver.yaml"
    path.write_text("a: [\n")
    cp = subprocess.run(
        [sys.executable, "-m", "kaudit", "patch-manifest", str(path)], capture_output=True, text=True, timeout=60
    )
    assert cp.returncode == 1
    assert cp.stdout == ""
    assert cp.stderr.startswith(f"error: {path}:2:1: not valid YAML")
    assert "Traceback" not in cp.stderr


def test_help_has_an_example(cli):
    for command in ("patch-manifest", "diff-manifest"):
        r = cli([command, "--help"])
        assert r.code == 0
        assert "Examples:" in r.out and f"  kaudit {command} " in r.out
