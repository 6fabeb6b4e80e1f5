"""The Kubernetes VM, made with Lima's k8s template (FACTS.md §3).

Everything runs ``limactl`` through a Host for this workstation (normally
``LocalHost()``), so tests put a documented double of limactl on PATH. The
pure parts (version parsing, JSON-lines parsing, the start command line) are
plain functions; :class:`Lima` adds the side effects.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from kaudit.core.errors import KauditError, UsageError
from kaudit.adapters.hosts.base import Host
from kaudit.adapters.hosts.lima import limactl_fatal

#: limactl start waits up to 10 minutes for the VM itself (--timeout default);
#: ours is a little longer so limactl's own error text wins.
START_TIMEOUT = 11 * 60
INSTALL_HINT = "install Lima 2.x: https://lima-vm.io/docs/installation/ (macOS: brew install lima)"
GiB = 1024 ** 3


@dataclass(frozen=True)
class LimaVersion:
    major: int
    minor: int
    patch: int
    raw: str

    def __str__(self) -> str:
        return self.raw

    def template_locator(self, template: str) -> str:
        """`template:k8s` for Lima 2.x, `template://k8s` for 1.x; paths and URLs unchanged."""
        if "/" in template or template.endswith((".yaml", ".yml")) or ":" in template:
            return template
        return f"template:{template}" if self.major >= 2 else f"template://{template}"


def parse_version(text: str) -> LimaVersion:
    """Read `limactl --version` output ("limactl version 2.2.0")."""
    m = re.search(r"version\s+v?(\d+)\.(\d+)\.(\d+)(\S*)", text)
    if not m:
        raise KauditError(f"cannot read the Lima version from `limactl --version`: {text.strip()!r}", INSTALL_HINT)
    major, minor, patch = (int(g) for g in m.groups()[:3])
    return LimaVersion(major, minor, patch, ".".join(m.groups()[:3]) + m.group(4))


@dataclass(frozen=True)
class Instance:
    name: str
    status: str  # Running | Stopped | Broken | Installing | Uninitialized
    dir: Path
    cpus: Optional[int] = None
    memory: Optional[int] = None  # bytes
    disk: Optional[int] = None  # bytes
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kubeconfig(self) -> Path:
        """Where the k8s template copies the admin kubeconfig (copyToHost)."""
        return kubeconfig_path(self.dir)

    def summary(self) -> str:
        """"Running, 4 CPUs, 4 GiB memory, 100 GiB disk"."""
        return ", ".join([self.status, *self.resources()])

    def resources(self) -> list[str]:
        parts = []
        if self.cpus:
            parts.append(f"{self.cpus} CPUs")
        if self.memory:
            parts.append(f"{self.memory / GiB:g} GiB memory")
        if self.disk:
            parts.append(f"{self.disk / GiB:g} GiB disk")
        return parts


def kubeconfig_path(instance_dir: Union[str, Path]) -> Path:
    return Path(instance_dir) / "copied-from-guest" / "kubeconfig.yaml"


def kubeconfig_message(path: Union[str, Path]) -> str:
    return f'use the cluster from this machine: export KUBECONFIG="{path}"'


def parse_list_json(text: str) -> list[Instance]:
    """`limactl list --json` prints one JSON object per line (not a JSON array)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise KauditError(
                f"cannot parse `limactl list --json` output line {n}: {e.msg} at column {e.colno}",
                "check limactl by hand: limactl list --json",
            ) from None
        if not isinstance(obj, dict) or "name" not in obj:
            raise KauditError(f"`limactl list --json` line {n} is not an instance object", "check: limactl list --json")
        out.append(
            Instance(
                name=obj["name"], status=obj.get("status", "Unknown"), dir=Path(obj.get("dir", "")),
                cpus=obj.get("cpus"), memory=obj.get("memory"), disk=obj.get("disk"), raw=obj,
            )
        )
    return out


def gib(value: Union[None, int, float, str], flag: str) -> Optional[float]:
    """A size in GiB for limactl's --memory/--disk: 8, 8.5, "8", "8GiB", "512MiB"."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        n = float(value)
    else:
        text = value.strip()
        try:
            n = float(text)
        except ValueError:
            from kaudit.core.units import parse_size

            try:
                n = parse_size(text) / GiB
            except (ValueError, KauditError):
                raise UsageError(f"{flag} {value!r} is not a size", "write GiB as a number (8) or a size (8GiB)") from None
    if n <= 0:
        raise UsageError(f"{flag} {value!r} must be positive")
    return n


@dataclass(frozen=True)
class StartPlan:
    """What ensure() will do: action is "create", "start" or "none"."""

    action: str
    argv: tuple[str, ...]
    reason: str


def start_argv(
    name: str,
    version: LimaVersion,
    *,
    limactl: str = "limactl",
    template: str = "k8s",
    cpus: Optional[int] = None,
    memory_gib: Optional[float] = None,
    disk_gib: Optional[float] = None,
) -> list[str]:
    """The `limactl start` line that creates NAME from a template."""
    argv = [limactl, "start", f"--name={name}", "--tty=false"]
    if cpus is not None:
        argv.append(f"--cpus={cpus}")
    if memory_gib is not None:
        argv.append(f"--memory={memory_gib:g}")
    if disk_gib is not None:
        argv.append(f"--disk={disk_gib:g}")
    argv.append(version.template_locator(template))
    return argv


class Lima:
    """limactl, run through a Host for this workstation."""

    def __init__(self, local: Host, *, limactl: str = "limactl"):
        self.local = local
        self.limactl = limactl
        self._version: Optional[LimaVersion] = None

    def _run(self, args: list[str], *, timeout: Optional[float] = 60, check: bool = False):
        return self.local.run([self.limactl, *args], check=check, timeout=timeout, sudo=False)

    def _fail(self, what: str, result, hint: str) -> KauditError:
        text = limactl_fatal(result.err) or (result.err.strip().splitlines() or [f"exit {result.returncode}"])[-1]
        return KauditError(f"{what}: {text}", hint)

    def version(self) -> LimaVersion:
        if self._version is None:
            r = self._run(["--version"], timeout=30)
            if r.returncode == 127:
                raise KauditError("limactl is not installed (needed for --host lima:NAME)", INSTALL_HINT)
            if not r.ok:
                raise self._fail("limactl --version failed", r, INSTALL_HINT)
            self._version = parse_version(r.out)
        return self._version

    def list(self) -> list[Instance]:
        """All instances. No instances is not an error (limactl only warns)."""
        r = self._run(["list", "--json"])
        if not r.ok:
            raise self._fail("limactl list failed", r, "run it by hand: limactl list")
        return parse_list_json(r.out)

    def get(self, name: str) -> Optional[Instance]:
        """The instance NAME, or None if Lima has no such instance."""
        r = self._run(["list", "--json", name])
        if r.returncode == 1 and "No instance matching" in r.err:
            return None  # "unmatched instances": limactl exits 1 after a warning
        if not r.ok:
            raise self._fail(f"limactl list {name} failed", r, "run it by hand: limactl list")
        found = [i for i in parse_list_json(r.out) if i.name == name]
        return found[0] if found else None

    def plan(
        self,
        name: str,
        *,
        template: str = "k8s",
        cpus: Optional[int] = None,
        memory: Union[None, int, float, str] = None,
        disk: Union[None, int, float, str] = None,
    ) -> tuple[Optional[Instance], StartPlan]:
        """Read the instance and decide: create it, start it, or nothing."""
        if cpus is not None and int(cpus) < 1:
            raise UsageError(f"--lima-cpus {cpus!r} must be at least 1")
        memory_gib = gib(memory, "--lima-memory")
        disk_gib = gib(disk, "--lima-disk")
        version = self.version()
        inst = self.get(name)
        if inst is None:
            argv = start_argv(name, version, limactl=self.limactl, template=template,
                              cpus=None if cpus is None else int(cpus), memory_gib=memory_gib, disk_gib=disk_gib)
            return None, StartPlan("create", tuple(argv), f"VM {name} does not exist")
        if inst.status == "Running":
            return inst, StartPlan("none", (), f"VM {name} is running ({', '.join(inst.resources())})")
        if inst.status == "Stopped":
            return inst, StartPlan("start", (self.limactl, "start", "--tty=false", name), f"VM {name} is stopped")
        hint = (
            f"wait for it to finish (limactl list {name})" if inst.status == "Installing"
            else f"look at {inst.dir}/ha.stderr.log, or recreate it: kaudit destroy --host lima:{name} && kaudit up"
        )
        raise KauditError(f"Lima VM {name} is {inst.status}; kaudit cannot use it", hint)

    def ensure(self, name: str, plan: StartPlan) -> Instance:
        """Carry out a plan from plan(); returns the running instance."""
        if plan.action != "none":
            r = self.local.run(list(plan.argv), check=False, timeout=START_TIMEOUT, sudo=False)
            if not r.ok:
                what = "creating" if plan.action == "create" else "starting"
                raise self._fail(
                    f"{what} Lima VM {name} failed (limactl start exit {r.returncode})", r,
                    f"see {self._dir_hint(name)}ha.stderr.log, or run by hand: {' '.join(plan.argv)}",
                )
        inst = self.get(name)
        if inst is None or inst.status != "Running":
            state = "missing" if inst is None else inst.status
            raise KauditError(f"Lima VM {name} is {state} after limactl start", f"check: limactl list {name}")
        return inst

    def _dir_hint(self, name: str) -> str:
        try:
            inst = self.get(name)
        except KauditError:
            inst = None
        return f"{inst.dir}/" if inst else f"~/.lima/{name}/"

    def delete(self, name: str) -> bool:
        """Delete NAME (stopping it first, --force). False if it did not exist."""
        if self.get(name) is None:
            return False
        r = self._run(["delete", "--force", "--tty=false", name], timeout=300)
        if not r.ok:
            raise self._fail(f"deleting Lima VM {name} failed", r, f"run by hand: limactl delete --force {name}")
        return True
