"""A real OpenSSH sshd on 127.0.0.1 for the SSH host tests (a pytest plugin).

The session fixture ``sshd`` starts Debian's /usr/sbin/sshd with its own
config, a generated ed25519 host key and a generated user key, on a free
loopback port. It serves two users:

- ``root`` (``sshd.url``): the usual case for a kubeadm node reached as root;
- an unprivileged user ``kaudit-t<pid>`` (``sshd.user_url``, created with
  useradd when the tests run as root and removed afterwards), whose PATH starts
  with tests/doubles/guest-bin so ``sudo`` is the passwordless-sudo double that
  logs its arguments to ``sshd.sudo_log``.

Nothing is skipped: without sshd the fixture fails and says how to install it.
Other tests use it as ``def test_x(sshd): SshHost(..., key_path=sshd.key_path,
known_hosts=sshd.known_hosts_path)`` or ``sshd.host()``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

GUEST_BIN = Path(__file__).resolve().parent / "doubles" / "guest-bin"
TEST_USER_PREFIX = "kaudit-t"  # + the pid of the test session
TEST_USER_COMMENT = "kaudit test suite (tests/sshd.py)"
SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


@dataclass
class Sshd:
    port: int
    dir: Path
    key_path: Path  # the user's private key (ed25519), accepted for root and the unprivileged user
    known_hosts_path: Path  # a known_hosts that already trusts the server
    host_key_pub: str  # "ssh-ed25519 AAAA..."
    root_user: str
    unprivileged_user: Optional[str]
    sudo_log: Path
    log_path: Path
    proc: subprocess.Popen = field(repr=False, default=None)

    @property
    def url(self) -> str:
        return f"ssh://{self.root_user}@127.0.0.1:{self.port}"

    @property
    def user_url(self) -> str:
        return f"ssh://{self.unprivileged_user}@127.0.0.1:{self.port}"

    def host(self, user: Optional[str] = None, **kwargs):
        """An SshHost on this server (known_hosts and key preset, overridable)."""
        from kaudit.adapters.hosts.ssh import SshHost

        kwargs.setdefault("key_path", self.key_path)
        kwargs.setdefault("known_hosts", self.known_hosts_path)
        return SshHost("127.0.0.1", user=user or self.root_user, port=self.port, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True, capture_output=True,
    )


def _wait_for_banner(port: int, proc: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-2.0-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _remove_stale_test_users() -> None:
    """Users left by test sessions that were killed (their pid is gone)."""
    for pw in pwd.getpwall():
        m = re.fullmatch(re.escape(TEST_USER_PREFIX) + r"(\d+)", pw.pw_name)
        if m and pw.pw_gecos == TEST_USER_COMMENT and not _pid_alive(int(m.group(1))):
            _remove_test_user(pw.pw_name)


def _ensure_test_user(home: Path) -> Optional[str]:
    """Create this session's unprivileged user when running as root (None otherwise).
    One user per test session: sessions running side by side must not share one."""
    if os.geteuid() != 0:
        return None
    _remove_stale_test_users()
    name = f"{TEST_USER_PREFIX}{os.getpid()}"
    subprocess.run(
        ["useradd", "--password", "*", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
         "--comment", TEST_USER_COMMENT, name],
        check=True, capture_output=True,
    )
    pw = pwd.getpwnam(name)
    home.mkdir(exist_ok=True)
    os.chown(home, pw.pw_uid, pw.pw_gid)
    return name


class SshdUnavailable(Exception):
    pass


@pytest.fixture(scope="session")
def sshd():
    try:
        with running_sshd() as server:
            yield server
    except SshdUnavailable as e:
        pytest.fail(str(e), pytrace=False)


@contextlib.contextmanager
def running_sshd(wrap=None, env: Optional[dict] = None, path_prefix: str = "", unprivileged_user: bool = True):
    """Start sshd (see the module doc); also used by bench/ssh_bench.py and tests/ssh_nodes.py.
    ``wrap(argv) -> argv`` runs sshd inside something (a mount namespace); ``env`` adds
    variables to every session and ``path_prefix`` directories in front of its PATH."""
    sshd_bin = next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), shutil.which("sshd"))
    if not sshd_bin or not shutil.which("ssh-keygen"):
        raise SshdUnavailable(
            "the SSH tests need OpenSSH's sshd and ssh-keygen: apt-get install openssh-server "
            "(./scripts/test installs it)"
        )
    with contextlib.ExitStack() as cleanup:
        # not under pytest's tmp dir: that is 0700 root, and sshd reads
        # authorized_keys as the logging-in user
        d = Path(tempfile.mkdtemp(prefix="kaudit-sshd-"))
        cleanup.callback(shutil.rmtree, d, True)
        d.chmod(0o755)
        host_key = d / "ssh_host_ed25519_key"
        user_key = d / "id_ed25519"
        _keygen(host_key, "kaudit-test-host")
        _keygen(user_key, "kaudit-test-user")
        auth = d / "authorized_keys"
        auth.write_text(Path(str(user_key) + ".pub").read_text())
        auth.chmod(0o644)
        # a copy of the sudo double where any user can run it (the checkout may sit in a 0700 home)
        guest_bin = d / "bin"
        guest_bin.mkdir(mode=0o755)
        shutil.copy2(GUEST_BIN / "sudo", guest_bin / "sudo")
        (guest_bin / "sudo").chmod(0o755)
        sudo_log = d / "sudo.log"
        sudo_log.touch()
        sudo_log.chmod(0o666)
        unprivileged = _ensure_test_user(d / "home") if unprivileged_user else None
        if unprivileged:
            cleanup.callback(_remove_test_user, unprivileged)
        root_user = pwd.getpwuid(os.geteuid()).pw_name
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation dir

        host_pub = Path(str(host_key) + ".pub").read_text().split()
        proc = None
        log_path = d / "sshd.log"
        for _attempt in range(5):
            port = _free_port()
            config = d / "sshd_config"
            config.write_text(
                "\n".join([
                    f"Port {port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {d / 'sshd.pid'}",
                    f"AuthorizedKeysFile {auth}",
                    "UsePAM no",
                    "StrictModes no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    f"AllowUsers {root_user}" + (f" {unprivileged}" if unprivileged else ""),
                    "Subsystem sftp internal-sftp",
                    f"SetEnv PATH={path_prefix}{guest_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin FAKE_SUDO_LOG={sudo_log}"
                    + "".join(f" {k}={v}" for k, v in (env or {}).items()),
                    "LogLevel VERBOSE",
                    "",
                ])
            )
            log = open(log_path, "ab")
            argv = [sshd_bin, "-D", "-e", "-f", str(config)]
            proc = subprocess.Popen(wrap(argv) if wrap else argv, stdout=log, stderr=log)
            log.close()
            if _wait_for_banner(port, proc, time.monotonic() + 10):
                cleanup.callback(_stop, proc)
                break
            proc.kill()
            proc.wait(timeout=5)
            proc = None
        if proc is None:
            raise SshdUnavailable(f"sshd did not start; its log:\n{log_path.read_text(errors='replace')}")

        known_hosts = d / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
        server = Sshd(
            port=port, dir=d, key_path=user_key, known_hosts_path=known_hosts,
            host_key_pub=f"{host_pub[0]} {host_pub[1]}", root_user=root_user,
            unprivileged_user=unprivileged, sudo_log=sudo_log, log_path=log_path, proc=proc,
        )
        yield server


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _remove_test_user(name: str) -> None:
    # session processes of the user may outlive sshd for a moment
    for _ in range(20):
        if subprocess.run(["userdel", "--force", name], capture_output=True).returncode in (0, 6):
            break
        time.sleep(0.1)
