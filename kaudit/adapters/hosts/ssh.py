"""A node reached over SSH with paramiko: ``--host ssh://user@host[:port]``.

Commands are quoted with :func:`shell_join` here and nowhere else, because
sshd hands the command line to the user's login shell. Files move over SFTP;
writes are atomic (a dot-prefixed temp file beside the target, renamed over
it), so kubelet never sees a half-written manifest.

Host keys are checked against known_hosts. An unknown key is refused unless
the user passes ``--ssh-accept-new-host-key`` (then it is recorded, like
OpenSSH's ``StrictHostKeyChecking=accept-new``); a changed key is always
refused.
"""

from __future__ import annotations

import logging
import os
import posixpath
import secrets
import select
import socket
import threading
import time
from pathlib import Path
from typing import Optional

import paramiko

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import Host, Result, shell_join

# paramiko logs transport failures from its own thread; without a handler Python
# would print them to stderr beside kaudit's one-line error
logging.getLogger("paramiko").addHandler(logging.NullHandler())

DEFAULT_PORT = 22
CONNECT_TIMEOUT = 15.0


class _UnknownHostKey(Exception):
    def __init__(self, key: paramiko.PKey):
        super().__init__("unknown host key")
        self.key = key


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown keys, or record them when the user allowed it."""

    def __init__(self, accept_new: bool, record):
        self.accept_new = accept_new
        self.record = record

    def missing_host_key(self, client, hostname, key):
        if not self.accept_new:
            raise _UnknownHostKey(key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.record(hostname, key)


def fingerprint(key: paramiko.PKey) -> str:
    """The SHA256 fingerprint as OpenSSH prints it (ssh-keygen -lf)."""
    import base64
    import hashlib

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class SshHost(Host):
    def __init__(
        self,
        hostname: str,
        *,
        user: str,
        port: int = DEFAULT_PORT,
        key_path: Optional[os.PathLike[str] | str] = None,
        known_hosts: Optional[os.PathLike[str] | str] = None,
        accept_new_host_key: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT,
    ):
        self.hostname = hostname
        self.user = user
        self.port = port
        self.key_path = Path(key_path).expanduser() if key_path else None
        self.known_hosts = Path(known_hosts).expanduser() if known_hosts else Path("~/.ssh/known_hosts").expanduser()
        #: the system-wide list is read too (never written) unless a file was given
        self.system_known_hosts = None if known_hosts else Path("/etc/ssh/ssh_known_hosts")
        self.accept_new_host_key = accept_new_host_key
        self.connect_timeout = connect_timeout
        self.name = f"ssh://{user}@{hostname}" + (f":{port}" if port != DEFAULT_PORT else "")
        self._client: Optional[paramiko.SSHClient] = None
        self._sftp: Optional[paramiko.SFTPClient] = None
        self._sftp_fsync: Optional[bool] = None  # does the server do fsync@openssh.com?

    @property
    def is_root(self) -> bool:
        return self.user == "root"

    # -- connection ----------------------------------------------------------
    def _known_hosts_entry(self) -> str:
        # OpenSSH writes non-default ports as [host]:port
        return self.hostname if self.port == DEFAULT_PORT else f"[{self.hostname}]:{self.port}"

    def _record_host_key(self, hostname: str, key: paramiko.PKey) -> None:
        """Append one line to known_hosts, leaving the user's other lines as they are."""
        path = self.known_hosts
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a") as f:
                if f.tell() > 0 and not path.read_bytes().endswith(b"\n"):
                    f.write("\n")
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        except OSError as e:
            raise KauditError(f"cannot record the host key of {self.name} in {path}: {e.strerror}") from None

    def _load_key(self) -> Optional[paramiko.PKey]:
        if self.key_path is None:
            return None
        try:
            return paramiko.PKey.from_path(self.key_path)
        except FileNotFoundError:
            raise KauditError(f"--ssh-key {self.key_path}: no such file", "pass the path of a private key") from None
        except (paramiko.PasswordRequiredException, TypeError):  # cryptography raises TypeError
            raise KauditError(
                f"--ssh-key {self.key_path} is protected by a passphrase",
                f"load it into your agent (ssh-add {self.key_path}) and leave out --ssh-key",
            ) from None
        except (paramiko.SSHException, ValueError, OSError) as e:
            raise KauditError(
                f"--ssh-key {self.key_path}: cannot load the private key: {e}",
                "pass an OpenSSH ed25519, ECDSA or RSA private key",
            ) from None

    def connect(self) -> paramiko.SSHClient:
        """Connect (once) and return the client; every failure is one KauditError."""
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self.close()  # dropped (node rebooted, NAT timeout): connect again
        pkey = self._load_key()
        client = paramiko.SSHClient()
        if self.system_known_hosts is not None and self.system_known_hosts.is_file():
            try:
                client.load_system_host_keys(str(self.system_known_hosts))
            except (OSError, paramiko.SSHException):
                pass  # unreadable system list: the user's own file still decides
        if self.known_hosts.exists():
            try:
                client.load_host_keys(str(self.known_hosts))
            except (OSError, paramiko.SSHException) as e:
                raise KauditError(f"cannot read known_hosts {self.known_hosts}: {e}") from None
        client.set_missing_host_key_policy(_HostKeyPolicy(self.accept_new_host_key, self._record_host_key))
        target = f"{self.hostname}:{self.port}"
        try:
            client.connect(
                self.hostname,
                port=self.port,
                username=self.user,
                pkey=pkey,
                allow_agent=pkey is None,
                look_for_keys=pkey is None,
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
            )
        except _UnknownHostKey as e:
            client.close()
            raise KauditError(
                f"{self.name}: host key {e.key.get_name()} {fingerprint(e.key)} is not in {self.known_hosts}; refusing to connect",
                "check the fingerprint on the node (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
                "then rerun with --ssh-accept-new-host-key to record it",
            ) from None
        except paramiko.BadHostKeyException as e:
            client.close()
            raise KauditError(
                f"{self.name}: host key CHANGED ({fingerprint(e.key)}, known_hosts has {fingerprint(e.expected_key)}); "
                "refusing to connect",
                f"if the node was reinstalled, remove the old key with "
                f"ssh-keygen -R '{self._known_hosts_entry()}' -f {self.known_hosts}",
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            how = f"key {self.key_path}" if self.key_path else "the SSH agent and ~/.ssh keys"
            raise KauditError(
                f"{self.name}: authentication as {self.user} failed with {how}",
                "pass --ssh-key PATH, or add the key to the agent (ssh-add), "
                f"and check ~{self.user}/.ssh/authorized_keys on the node",
            ) from None
        except socket.gaierror as e:
            client.close()
            raise KauditError(
                f"{self.name}: cannot resolve host name {self.hostname!r} ({e.strerror})",
                "check the host in --host ssh://user@host[:port]",
            ) from None
        except (socket.timeout, TimeoutError):
            client.close()
            raise KauditError(
                f"{self.name}: timed out connecting to {target} after {self.connect_timeout:g}s",
                "check that the node is up and that a firewall lets you reach the SSH port",
            ) from None
        except (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError):
            client.close()
            raise KauditError(
                f"{self.name}: connection refused by {target}",
                f"check that sshd runs on the node and listens on port {self.port} (ssh -p {self.port} {self.user}@{self.hostname})",
            ) from None
        except paramiko.SSHException as e:
            client.close()
            text = str(e)
            if "banner" in text or "No existing session" in text:
                # the port answered but no SSH server spoke (or the transport died before auth)
                raise KauditError(
                    f"{self.name}: no SSH handshake from {target} within {self.connect_timeout:g}s ({text})",
                    f"check that port {self.port} on the node is sshd: ssh -v -p {self.port} {self.user}@{self.hostname} true",
                ) from None
            raise KauditError(f"{self.name}: SSH error: {text}", f"try: ssh -v -p {self.port} {self.user}@{self.hostname} true") from None
        except OSError as e:
            client.close()
            raise KauditError(
                f"{self.name}: cannot connect to {target}: {e.strerror or e}",
                "check the host, the port and your network",
            ) from None
        # keep NAT and firewalls from dropping the connection during long waits
        client.get_transport().set_keepalive(30)
        self._client = client
        return client

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is not None and self._client is not None and not self._client.get_transport().is_active():
            self.close()
        if self._sftp is None:
            try:
                self._sftp = self.connect().open_sftp()
            except paramiko.SSHException as e:
                raise KauditError(
                    f"{self.name}: cannot open an SFTP session: {e}",
                    "enable the sftp subsystem in the node's sshd_config (Subsystem sftp internal-sftp)",
                ) from None
        return self._sftp

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

    # -- commands ------------------------------------------------------------
    def _exec(self, argv: list[str], *, input: bytes | None, timeout: float | None, sudo: bool) -> Result:
        if sudo and not self.is_root:
            argv = ["sudo", "-n", "--", *argv]
        command = shell_join(argv)
        for attempt in (1, 2):
            client = self.connect()
            try:
                chan = client.get_transport().open_session(timeout=self.connect_timeout)
                break
            except (paramiko.SSHException, OSError, EOFError, AttributeError) as e:
                # the connection died between commands: one fresh connection, then give up
                # (only before exec, so a command never runs twice)
                self.close()
                if attempt == 2:
                    raise KauditError(f"{self.name}: cannot open a session: {e}", "check the connection and rerun") from None
        try:
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            self.close()
            raise KauditError(f"{self.name}: cannot start {argv[0]}: {e}", "check the connection and rerun") from None

        sender = None
        if input:
            def send() -> None:
                try:
                    chan.sendall(input)
                except OSError:
                    pass  # the command exited without reading all input
                finally:
                    chan.shutdown_write()

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
        else:
            chan.shutdown_write()

        out, err = bytearray(), bytearray()
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = False
        exited_at: float | None = None
        while True:
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                exited_at = exited_at or time.monotonic()
                # wait briefly for EOF so no trailing output is lost; a background
                # child holding stdout open must not hang us
                if chan.eof_received or chan.closed or time.monotonic() - exited_at > 2.0:
                    break
            if deadline is not None and time.monotonic() >= deadline:
                timed_out = True
                break
            wait = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            select.select([chan], [], [], wait)
        if timed_out:
            chan.close()
            return Result(tuple(argv), 124, bytes(out), bytes(err) + f"timed out after {timeout}s\n".encode())
        status = chan.recv_exit_status()
        while chan.recv_ready():
            out += chan.recv(65536)
        while chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        chan.close()
        if sender is not None:
            sender.join(timeout=1)
        if status == -1:  # killed by a signal: sshd sent no exit status
            status = 255
            err += b"remote command ended without an exit status (killed by a signal?)\n"
        return Result(tuple(argv), status, bytes(out), bytes(err))

    # -- files ---------------------------------------------------------------
    def read_file(self, path: str) -> bytes:
        if not self.is_root:
            # root-only files (kubeadm writes manifests 0600) need sudo
            return super().read_file(path)
        sftp = self._sftp_client()
        try:
            with sftp.open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise KauditError(f"{self.name}: cannot read {path}: {e.strerror or e}") from None

    def write_file(self, path: str, data: bytes, *, mode: int = 0o600, atomic: bool = True) -> None:
        if self.is_root:
            self._write_as_root(path, data, mode, atomic)
        else:
            self._write_with_sudo(path, data, mode, atomic)

    def _temp_beside(self, path: str) -> str:
        parent = posixpath.dirname(path) or "/"
        # dot-prefixed: kubelet ignores dot files in the manifests directory
        return posixpath.join(parent, f".{posixpath.basename(path)}.{secrets.token_hex(4)}.kaudit-tmp")

    def _write_as_root(self, path: str, data: bytes, mode: int, atomic: bool) -> None:
        parent = posixpath.dirname(path) or "/"
        sftp = self._sftp_client()
        try:
            sftp.stat(parent)
        except OSError:
            self.run(["sh", "-c", 'umask 077; mkdir -p -- "$1"', "sh", parent], sudo=False,
                     hint="check that the parent path is a directory on the node")
        tmp = self._temp_beside(path) if atomic else path
        try:
            with sftp.open(tmp, "wb") as f:
                f.chmod(mode)  # before any byte is written: secrets are never world-readable
                f.set_pipelined(True)
                f.write(data)
                f.flush()
                if atomic:
                    self._fsync(f, tmp)  # data on disk before the rename makes it visible
            if atomic:
                sftp.posix_rename(tmp, path)
        except (OSError, KauditError) as e:
            if atomic:
                try:
                    sftp.remove(tmp)
                except OSError:
                    pass
            why = e.message if isinstance(e, KauditError) else (e.strerror or str(e))
            raise KauditError(f"{self.name}: cannot write {path}: {why}", "check the path and free space on the node") from None

    def _fsync(self, f: paramiko.SFTPFile, path: str) -> None:
        """fsync over SFTP (OpenSSH's fsync@openssh.com extension), else `sync` on the node.
        paramiko has no public call for the extension, so send the request itself."""
        if self._sftp_fsync is not False:
            from paramiko.sftp import CMD_EXTENDED

            try:
                self._sftp_client()._request(CMD_EXTENDED, "fsync@openssh.com", f.handle)
                self._sftp_fsync = True
                return
            except (OSError, paramiko.SSHException):
                if self._sftp_fsync:  # worked before: a real failure
                    raise
                self._sftp_fsync = False  # the server lacks the extension
        self.run(["sh", "-c", 'sync -- "$1" 2>/dev/null || sync', "sh", path], sudo=False)

    def _write_with_sudo(self, path: str, data: bytes, mode: int, atomic: bool) -> None:
        """Upload to a private temp dir as the login user, then install as root
        into a dot-temp beside the target and rename it over the target."""
        r = self.run(["mktemp", "-d", "/tmp/kaudit.XXXXXXXX"], sudo=False)
        staging = r.out.strip()
        upload = posixpath.join(staging, "data")
        tmp = self._temp_beside(path) if atomic else path
        sftp = self._sftp_client()
        try:
            with sftp.open(upload, "wb") as f:
                f.chmod(0o600)
                f.set_pipelined(True)
                f.write(data)
                f.flush()
            script = (
                'set -e; umask 077; mkdir -p -- "$1"; install -m "$4" -- "$2" "$3"; '
                'sync -- "$3" 2>/dev/null || sync; '
                'if [ "$3" != "$5" ]; then mv -f -- "$3" "$5"; fi'
            )
            r = self.run(
                ["sh", "-c", script, "sh", posixpath.dirname(path) or "/", upload, tmp, format(mode, "o"), path],
                check=False,
            )
            if not r.ok:
                if atomic:
                    self.run(["rm", "-f", "--", tmp], check=False)
                raise KauditError(
                    f"{self.name}: cannot write {path}: {r.err.strip() or 'exit ' + str(r.returncode)}",
                    f"check that {self.user} may run sudo without a password on the node (sudo -n true)",
                )
        except OSError as e:
            raise KauditError(f"{self.name}: cannot upload to {upload}: {e.strerror or e}", "check free space in /tmp on the node") from None
        finally:
            self.run(["rm", "-rf", "--", staging], sudo=False, check=False)
