"""The local host and the seam's generic parts, on real files and real subprocesses."""

import os
import stat

import pytest

from kaudit.core.errors import CommandError, KauditError
from kaudit.adapters.hosts import Secret, display_command, open_host, shell_join
from kaudit.adapters.hosts.base import Host, Result
from kaudit.adapters.hosts.local import LocalHost


def test_rootfs_maps_node_paths(tmp_path):
    host = open_host("local", rootfs=tmp_path)
    host.write_file("/etc/kubernetes/audit-policy.yaml", b"x: 1\n", mode=0o600)
    written = tmp_path / "etc/kubernetes/audit-policy.yaml"
    assert written.read_bytes() == b"x: 1\n"
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert host.read_file("/etc/kubernetes/audit-policy.yaml") == b"x: 1\n"
    assert host.exists("/etc/kubernetes/audit-policy.yaml")
    assert host.stat("/etc/kubernetes/audit-policy.yaml").mode == 0o600


def test_atomic_write_leaves_no_temp_and_replaces(tmp_path):
    host = LocalHost(tmp_path)
    host.write_file("/etc/kubernetes/manifests/kube-apiserver.yaml", b"old\n")
    host.write_file("/etc/kubernetes/manifests/kube-apiserver.yaml", b"new\n", mode=0o644)
    d = tmp_path / "etc/kubernetes/manifests"
    assert os.listdir(d) == ["kube-apiserver.yaml"]
    assert (d / "kube-apiserver.yaml").read_bytes() == b"new\n"


def test_failed_write_keeps_the_old_file(tmp_path):
    host = LocalHost(tmp_path)
    host.write_file("/etc/a.yaml", b"old\n")
    (tmp_path / "etc").chmod(0o500)
    try:
        if os.geteuid() == 0:
            # root ignores directory modes; make the target a directory's child of a file instead
            with pytest.raises(KauditError) as e:
                host.write_file("/etc/a.yaml/child", b"new\n")
        else:
            with pytest.raises(KauditError) as e:
                host.write_file("/etc/a.yaml", b"new\n")
    finally:
        (tmp_path / "etc").chmod(0o700)
    assert "cannot write" in str(e.value)
    assert (tmp_path / "etc/a.yaml").read_bytes() == b"old\n"
    assert sorted(os.listdir(tmp_path / "etc")) == ["a.yaml"]


def test_read_missing_file_names_host_and_path(tmp_path):
    with pytest.raises(KauditError) as e:
        LocalHost(tmp_path).read_file("/etc/kubernetes/manifests/kube-apiserver.yaml")
    assert "/etc/kubernetes/manifests/kube-apiserver.yaml" in str(e.value)
    assert str(tmp_path) in str(e.value)


def test_run_passes_args_unchanged_and_input():
    host = LocalHost()
    tricky = ["a b", "it's", '"q"', "$(echo pwned)", "`id`", "*", "x\ny"]
    r = host.run(["printf", "%s\\0", *tricky], sudo=False)
    assert r.stdout.split(b"\0")[:-1] == [t.encode() for t in tricky]
    r = host.run(["cat"], input=b"hello", sudo=False)
    assert r.out == "hello"


def test_failed_command_reports_command_exit_and_tail_with_secrets_masked():
    host = LocalHost()
    with pytest.raises(CommandError) as e:
        host.run(["sh", "-c", "echo one >&2; echo two >&2; exit 7", Secret("s3cr3t")], sudo=False)
    err = e.value
    assert err.returncode == 7
    assert "exit 7" in str(err)
    assert "***" in err.command and "s3cr3t" not in str(err)
    assert err.details() == ["one", "two"]


def test_missing_program_is_exit_127():
    r = LocalHost().run(["kaudit-no-such-program"], check=False, sudo=False)
    assert r.returncode == 127
    assert "not found" in r.err


def test_shell_join_quotes_at_the_edge():
    assert shell_join(["echo", "a b", "$(x)"]) == "echo 'a b' '$(x)'"
    assert display_command(["curl", "-H", Secret("Authorization: Bearer t")]) == "curl -H ***"


class ScriptHost(Host):
    """The generic file methods of Host run through _exec: check them on a real shell."""

    name = "script"

    def __init__(self, root):
        self.root = root
        self.calls = []

    def _exec(self, argv, *, input, timeout, sudo):
        import subprocess

        self.calls.append(argv)
        argv = [a.replace("/node", str(self.root)) for a in argv]
        cp = subprocess.run(argv, input=input, capture_output=True)
        return Result(tuple(argv), cp.returncode, cp.stdout, cp.stderr)


def test_generic_command_based_file_ops(tmp_path):
    host = ScriptHost(tmp_path)
    host.write_file("/node/etc/kubernetes/p.yaml", b"rules: []\n", mode=0o600)
    assert (tmp_path / "etc/kubernetes/p.yaml").read_bytes() == b"rules: []\n"
    assert os.listdir(tmp_path / "etc/kubernetes") == ["p.yaml"]
    assert host.read_file("/node/etc/kubernetes/p.yaml") == b"rules: []\n"
    st = host.stat("/node/etc/kubernetes/p.yaml")
    assert st.mode == 0o600 and st.size == 10
    assert host.exists("/node/etc/kubernetes/p.yaml")
    assert not host.exists("/node/etc/nope")
    assert host.stat("/node/etc/nope") is None
    with pytest.raises(KauditError):
        host.read_file("/node/etc/nope")


def test_command_path_is_the_node_path_except_under_rootfs(tmp_path):
    assert LocalHost().command_path("/etc/kubernetes/admin.conf") == "/etc/kubernetes/admin.conf"
    assert LocalHost(tmp_path).command_path("/etc/kubernetes/admin.conf") == str(tmp_path / "etc/kubernetes/admin.conf")
    assert ScriptHost(tmp_path).command_path("/etc/kubernetes/admin.conf") == "/etc/kubernetes/admin.conf"
