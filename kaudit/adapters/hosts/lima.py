"""A Lima VM reached through ``limactl shell``: ``--host lima:NAME``.

``limactl shell NAME -- ARGS...`` quotes each argument itself (shellescape) and
runs the joined string with ``$SHELL --login -c`` in the guest over ssh, so an
argv passed here arrives unchanged. One quirk: leading arguments that look
like ``KEY=value`` are treated as environment assignments and only their value
is quoted, so the command always starts with ``sudo`` or ``env`` and never with
a user value. ``--workdir /`` because the k8s template mounts nothing, so the
host's current directory does not exist in the guest.

Exit codes: the remote command's own; 255 when ssh itself failed; limactl's own
failures (instance missing or stopped) exit 1 with a logrus ``level=fatal``
line, which is turned into a KauditError carrying limactl's text.
"""

from __future__ import annotations

import os
import re
import subprocess

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import Host, Result

# logrus text format when stderr is not a terminal, and its terminal form
_FATAL = re.compile(r'level=fatal msg="((?:[^"\\]|\\.)*)"|^FATA\[\d+\] (.*)$', re.M)


def limactl_fatal(stderr: str) -> str | None:
    """The message of limactl's fatal log line, if it printed one."""
    m = _FATAL.search(stderr)
    if not m:
        return None
    if m.group(1) is not None:
        return m.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return m.group(2).strip()


class LimaHost(Host):
    def __init__(self, instance: str, *, limactl: str = "limactl", env: dict[str, str] | None = None):
        self.instance = instance
        self.limactl = limactl
        self.env = env
        self.name = f"lima:{instance}"

    def shell_argv(self, argv: list[str], *, sudo: bool = True) -> list[str]:
        """The local argv that runs argv in the guest (exposed for messages and tests)."""
        remote = ["sudo", "-n", "--", *argv] if sudo else ["env", "--", *argv]
        return [self.limactl, "shell", "--tty=false", "--workdir", "/", self.instance, "--", *remote]

    def _exec(self, argv: list[str], *, input: bytes | None, timeout: float | None, sudo: bool) -> Result:
        local = self.shell_argv(argv, sudo=sudo)
        env = None if self.env is None else {**os.environ, **self.env}
        try:
            cp = subprocess.run(
                local, input=input, capture_output=True, timeout=timeout, env=env,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise KauditError(
                f"{self.name}: {self.limactl} is not installed",
                "install Lima (https://lima-vm.io/docs/installation/), or pick another --host",
            ) from None
        except subprocess.TimeoutExpired as e:
            return Result(tuple(argv), 124, e.stdout or b"", (e.stderr or b"") + f"timed out after {timeout}s\n".encode())
        err = cp.stderr.decode("utf-8", "replace")
        if cp.returncode == 1:
            fatal = limactl_fatal(err)
            if fatal is not None:
                hint = (
                    f"start it: limactl start {self.instance}" if "stopped" in fatal
                    else f"create it with: kaudit up --host {self.name} --only vm" if "does not exist" in fatal
                    else f"check the VM: limactl list {self.instance}"
                )
                raise KauditError(f"{self.name}: limactl shell failed: {fatal}", hint)
        if cp.returncode == 255:
            last = err.strip().splitlines()[-1:] or ["no output"]
            raise KauditError(
                f"{self.name}: ssh into the VM failed (exit 255): {last[0]}",
                f"check the VM: limactl list {self.instance}; then limactl shell {self.instance} true",
            )
        return Result(tuple(argv), cp.returncode, cp.stdout, cp.stderr)
