"""SshHost against a real OpenSSH sshd on loopback (fixture `sshd`, tests/sshd.py)."""

from __future__ import annotations

import socket
import stat

import pytest

from kaudit.core.errors import CommandError, KauditError, UsageError
from kaudit.adapters.hosts import open_host, parse_ssh_url
from kaudit.adapters.hosts.ssh import SshHost

TRICKY = ["a b", "it's", '"double"', "$(echo pwned)", "`id`", "*", "x\ny", "back\\slash", "", "-n", "A=$HOME", ";", "|&>"]


@pytest.fixture
def root(sshd):
    with sshd.host() as h:
        yield h


def test_exec_exit_codes_stdout_stderr(root):
    r = root.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=False)
    assert (r.returncode, r.out, r.err) == (3, "out\n", "err\n")
    assert root.run(["true"]).ok
    with pytest.raises(CommandError) as e:
        root.run(["sh", "-c", "echo boom >&2; exit 42"])
    assert e.value.returncode == 42
    assert e.value.details() == ["boom"]
    assert "ssh://root@127.0.0.1" in str(e.value)


def test_tricky_arguments_reach_the_node_unchanged(root):
    r = root.run(["printf", "%s\\0", *TRICKY], sudo=False)
    assert r.stdout.split(b"\0")[:-1] == [t.encode() for t in TRICKY]


def test_stdin_and_large_output(root):
    data = bytes(range(256)) * 4096  # 1 MiB, binary
    r = root.run(["cat"], input=data)
    assert r.stdout == data
    r = root.run(["sh", "-c", "head -c 3000000 /dev/zero; echo done >&2"])
    assert len(r.stdout) == 3000000 and r.err == "done\n"


def test_timeout_is_exit_124(root):
    r = root.run(["sleep", "10"], timeout=0.5, check=False)
    assert r.returncode == 124 and "timed out" in r.err


def test_atomic_write_keeps_mode_and_leaves_no_temp(root, tmp_path):
    target = tmp_path / "etc/kubernetes/manifests/kube-apiserver.yaml"
    root.write_file(str(target), b"old\n", mode=0o600)
    assert target.read_bytes() == b"old\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    root.write_file(str(target), b"new\n", mode=0o644)
    assert target.read_bytes() == b"new\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in target.parent.iterdir()) == ["kube-apiserver.yaml"]
    assert root.read_file(str(target)) == b"new\n"
    assert root.stat(str(target)).mode == 0o644
    assert root.exists(str(target)) and not root.exists(str(target) + ".nope")


def test_failed_write_leaves_target_and_no_temp(root, tmp_path):
    # the target is a non-empty directory: the upload works, the rename must fail
    target = tmp_path / "manifests/kube-apiserver.yaml"
    target.mkdir(parents=True)
    (target / "keep").write_text("x")
    with pytest.raises(KauditError) as e:
        root.write_file(str(target), b"new\n")
    assert "cannot write" in str(e.value) and str(target) in str(e.value)
    assert (target / "keep").read_text() == "x"
    assert sorted(p.name for p in target.parent.iterdir()) == ["kube-apiserver.yaml"]


def test_read_missing_file_names_host_and_path(root, tmp_path):
    with pytest.raises(KauditError) as e:
        root.read_file(str(tmp_path / "nope.yaml"))
    assert "ssh://root@127.0.0.1" in str(e.value) and "nope.yaml" in str(e.value)


def test_unknown_host_key_is_refused_then_recorded_with_accept_new(sshd, tmp_path):
    known = tmp_path / "ssh/known_hosts"
    with pytest.raises(KauditError) as e:
        sshd.host(known_hosts=known).run(["true"])
    msg = str(e.value)
    assert "not in" in msg and "refusing" in msg and "SHA256:" in msg
    assert "--ssh-accept-new-host-key" in e.value.hint
    assert not known.exists()

    with sshd.host(known_hosts=known, accept_new_host_key=True) as h:
        assert h.run(["true"]).ok
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_key_pub}\n"
    # now known: accepted without the flag, and the file is not touched again
    with sshd.host(known_hosts=known) as h:
        assert h.run(["true"]).ok
    assert known.read_text().count("\n") == 1


def test_recording_keeps_existing_known_hosts_lines(sshd, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("# my hosts\nexample.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q")
    with sshd.host(known_hosts=known, accept_new_host_key=True) as h:
        h.run(["true"])
    lines = known.read_text().splitlines()
    assert lines[0] == "# my hosts" and lines[1].startswith("example.org ")
    assert lines[2] == f"[127.0.0.1]:{sshd.port} {sshd.host_key_pub}"


def test_changed_host_key_is_refused_even_with_accept_new(sshd, tmp_path):
    import paramiko

    other = paramiko.Ed25519Key.from_private_key_file(str(sshd.key_path))  # any other ed25519 key
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 {other.get_base64()}\n")
    with pytest.raises(KauditError) as e:
        sshd.host(known_hosts=known, accept_new_host_key=True).run(["true"])
    assert "CHANGED" in str(e.value)
    assert "ssh-keygen -R" in e.value.hint


def test_sudo_prefix_for_a_user_who_is_not_root(sshd, tmp_path):
    assert sshd.unprivileged_user, "the tests run as root, so the fixture creates an unprivileged user"
    sshd.sudo_log.write_text("")
    with sshd.host(user=sshd.unprivileged_user) as h:
        r = h.run(["printf", "%s\\0", *TRICKY])
        assert r.stdout.split(b"\0")[:-1] == [t.encode() for t in TRICKY]
        h.run(["id", "-un"], sudo=False)
    log = sshd.sudo_log.read_text()
    assert log == "\t".join(["-n", "--", "printf", "%s\\0", *TRICKY]) + "\n"  # id ran without sudo


def test_write_as_non_root_goes_through_sudo_install_and_rename(sshd):
    import os
    import pwd
    import shutil
    import tempfile
    from pathlib import Path

    pw = pwd.getpwnam(sshd.unprivileged_user)
    top = Path(tempfile.mkdtemp(prefix="kaudit-node-"))  # pytest's tmp dirs are 0700 root
    try:
        _write_as_non_root(sshd, pw, top)
    finally:
        shutil.rmtree(top)


def _write_as_non_root(sshd, pw, top):
    import os

    d = top / "node/etc/kubernetes"
    d.mkdir(parents=True)
    for p in (top, top / "node", top / "node/etc", d):
        os.chown(p, pw.pw_uid, pw.pw_gid)  # the sudo double cannot really become root
        p.chmod(0o755)
    target = d / "audit-policy.yaml"
    sshd.sudo_log.write_text("")
    with sshd.host(user=sshd.unprivileged_user) as h:
        h.write_file(str(target), b"rules: []\n", mode=0o600)
        assert h.read_file(str(target)) == b"rules: []\n"
    assert target.read_bytes() == b"rules: []\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in d.iterdir()] == ["audit-policy.yaml"]
    log = sshd.sudo_log.read_text()
    assert "install -m" in log and "mv -f" in log
    assert not [p for p in os.listdir("/tmp") if p.startswith("kaudit.") and os.stat("/tmp/" + p).st_uid == pw.pw_uid]


def test_connection_refused_is_one_line_with_a_hint(sshd):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    host = SshHost("127.0.0.1", user="root", port=port, key_path=sshd.key_path, known_hosts=sshd.known_hosts_path)
    with pytest.raises(KauditError) as e:
        host.run(["true"])
    assert "\n" not in str(e.value)
    assert str(e.value) == f"ssh://root@127.0.0.1:{port}: connection refused by 127.0.0.1:{port}"
    assert "sshd" in e.value.hint


def test_authentication_failure_names_user_and_key(sshd, tmp_path):
    import subprocess

    key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with pytest.raises(KauditError) as e:
        sshd.host(key_path=key).run(["true"])
    assert "authentication as root failed" in str(e.value) and str(key) in str(e.value)


def test_encrypted_key_without_agent_says_to_use_ssh_add(sshd, tmp_path):
    import subprocess

    key = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pass phrase", "-f", str(key)], check=True)
    with pytest.raises(KauditError) as e:
        sshd.host(key_path=key).run(["true"])
    assert "passphrase" in str(e.value) and "ssh-add" in e.value.hint


def test_rsa_and_ecdsa_keys_load(sshd, tmp_path):
    import subprocess

    auth = sshd.dir / "authorized_keys"
    before = auth.read_text()
    try:
        for kind in ("rsa", "ecdsa"):
            key = tmp_path / f"id_{kind}"
            subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True)
            auth.write_text(before + (tmp_path / f"id_{kind}.pub").read_text())
            with sshd.host(key_path=key) as h:
                assert h.run(["echo", kind]).out == f"{kind}\n"
    finally:
        auth.write_text(before)


def test_open_host_parses_ssh_urls(sshd):
    h = open_host(sshd.url, ssh_key=sshd.key_path, known_hosts=sshd.known_hosts_path)
    assert isinstance(h, SshHost) and h.port == sshd.port and h.name == sshd.url
    with h:
        assert h.run(["echo", "hi"]).out == "hi\n"
    assert parse_ssh_url("ssh://ubuntu@10.0.0.5") == ("ubuntu", "10.0.0.5", 22)
    assert parse_ssh_url("ssh://ubuntu@[::1]:2222") == ("ubuntu", "::1", 2222)


@pytest.mark.parametrize("spec", [
    "ssh://u@host:99999", "ssh://u@host:abc", "ssh://u:pw@host", "ssh://u@host/path", "ssh://", "ssh://u@:22",
])
def test_bad_ssh_urls_are_usage_errors(spec):
    with pytest.raises(UsageError):
        open_host(spec)


def test_a_port_that_is_not_sshd_times_out_in_one_line(capfd):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        host = SshHost("127.0.0.1", user="root", port=port, connect_timeout=0.5, known_hosts="/nonexistent/known_hosts")
        with pytest.raises(KauditError) as e:
            host.run(["true"])
    assert f"no SSH handshake from 127.0.0.1:{port} within 0.5s" in str(e.value)
    assert "\n" not in str(e.value)
    assert capfd.readouterr().err == ""  # paramiko's own log lines stay quiet


def test_hashed_known_hosts_entries_are_honoured(sshd, tmp_path):
    import shutil
    import subprocess

    known = tmp_path / "known_hosts"
    shutil.copy(sshd.known_hosts_path, known)
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert known.read_text().startswith("|1|")  # as with HashKnownHosts yes (Debian/Ubuntu default)
    with sshd.host(known_hosts=known) as h:
        assert h.run(["true"]).ok


def test_key_from_the_ssh_agent(sshd, tmp_path, monkeypatch):
    import os
    import subprocess

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            subprocess.run(["sleep", "0.05"])
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", "-q", str(sshd.key_path)], env=env, check=True, capture_output=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys to fall back on
        with sshd.host(key_path=None) as h:
            assert h.run(["echo", "via agent"]).out == "via agent\n"
    finally:
        agent.terminate()
        agent.wait(timeout=5)


def test_sudo_that_wants_a_password_fails_fast_with_a_hint(sshd):
    marker = sshd.sudo_log.with_name(sshd.sudo_log.name + ".needs-password")
    marker.touch()
    try:
        with sshd.host(user=sshd.unprivileged_user) as h:
            with pytest.raises(CommandError) as e:
                h.run(["true"], timeout=30)
            assert e.value.returncode == 1 and "a password is required" in e.value.details()[-1]
            with pytest.raises(KauditError) as e:
                h.write_file("/tmp/kaudit-never-written", b"x")
            assert "sudo -n true" in e.value.hint
    finally:
        marker.unlink()
    import os

    assert not os.path.exists("/tmp/kaudit-never-written")


def test_unresolvable_host_is_one_line(monkeypatch, sshd):
    import socket as socket_module

    def no_such_name(*args, **kwargs):
        raise socket_module.gaierror(socket_module.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket_module, "getaddrinfo", no_such_name)  # no DNS traffic from tests
    with pytest.raises(KauditError) as e:
        SshHost("cp1.example.invalid", user="root", key_path=sshd.key_path, known_hosts=sshd.known_hosts_path).run(["true"])
    assert str(e.value) == "ssh://root@cp1.example.invalid: cannot resolve host name 'cp1.example.invalid' (Name or service not known)"
    assert "--host" in e.value.hint


def test_reconnects_after_the_connection_dropped(sshd, tmp_path):
    with sshd.host() as h:
        assert h.run(["true"]).ok
        h.connect().get_transport().close()  # as if the node had rebooted between commands
        assert h.run(["echo", "back"]).out == "back\n"
        h.connect().get_transport().close()
        h.write_file(str(tmp_path / "f"), b"x")
        assert (tmp_path / "f").read_bytes() == b"x"


def test_cli_refuses_an_unknown_host_key_then_records_it_with_the_flag(cli, sshd, tmp_path):
    """The --ssh-* options reach the SSH host through a real command (diff-manifest)."""
    known = tmp_path / "known_hosts"
    base = ["diff-manifest", "--host", sshd.url, "--ssh-key", sshd.key_path, "--ssh-known-hosts", known]
    r = cli(base)
    assert r.code == 1
    lines = r.err.strip().splitlines()
    assert lines[0].startswith(f"error: {sshd.url}: host key ssh-ed25519 SHA256:") and lines[0].endswith("refusing to connect")
    assert lines[1].startswith("hint: ") and "--ssh-accept-new-host-key" in lines[1]
    assert "Traceback" not in r.err and not known.exists()

    r = cli([*base, "--ssh-accept-new-host-key"])
    assert "refusing" not in r.err and "Traceback" not in r.err
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {sshd.host_key_pub}\n"
