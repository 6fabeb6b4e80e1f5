"""Drive `helm` (and `kubectl apply` for the few objects kaudit owns) from the workstation.

Both run through the host seam (``ctx.local.run``) with the cluster's kubeconfig, so tests
replace them with doubles on PATH. argv builders are pure functions; the classes add the
side effects.

Idempotence: before `helm upgrade --install`, kaudit reads the installed release
(`helm list -o json`: chart NAME-VERSION and status; `helm get values -o json`: the
user-supplied values) and skips the upgrade when both equal what it would install. The
values go to helm as JSON on stdin (`-f -`), so what is compared is exactly what was sent.
For kubectl, client-side `apply` itself reports `unchanged`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from kaudit.core.charts import Chart
from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import Host, display_command

HELM_INSTALL_URL = "https://helm.sh/docs/intro/install/"
DEFAULT_TIMEOUT = 300.0


def go_duration(seconds: float) -> str:
    """Seconds as Go's time.Duration prints them: 300 -> '5m0s', 3725 -> '1h2m5s'."""
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def parse_timeout(value: Any) -> float:
    if value is None:
        return DEFAULT_TIMEOUT
    if isinstance(value, (int, float)):
        return float(value)
    from kaudit.core.units import parse_duration

    return parse_duration(str(value), field="--helm-timeout")


def _kubeconfig_args(kubeconfig: Optional[Path]) -> list[str]:
    return ["--kubeconfig", str(kubeconfig)] if kubeconfig else []


# -- pure argv builders ------------------------------------------------------------


def upgrade_install_argv(chart: Chart, namespace: str, timeout: float, kubeconfig: Optional[Path] = None) -> list[str]:
    return [
        "helm", "upgrade", "--install", chart.release, chart.chart,
        "--repo", chart.repo,
        "--version", chart.version,
        "--namespace", namespace,
        "--create-namespace",
        "--wait",
        "--timeout", go_duration(timeout),
        "-f", "-",
        *_kubeconfig_args(kubeconfig),
    ]


def list_argv(release: str, namespace: str, kubeconfig: Optional[Path] = None) -> list[str]:
    return ["helm", "list", "--namespace", namespace, "--all", "--filter", f"^{re.escape(release)}$", "-o", "json", *_kubeconfig_args(kubeconfig)]


def get_values_argv(release: str, namespace: str, kubeconfig: Optional[Path] = None) -> list[str]:
    return ["helm", "get", "values", release, "--namespace", namespace, "-o", "json", *_kubeconfig_args(kubeconfig)]


def kubectl_apply_argv(kubeconfig: Optional[Path] = None) -> list[str]:
    return ["kubectl", *_kubeconfig_args(kubeconfig), "apply", "-f", "-"]


def values_json(values: Any) -> bytes:
    return json.dumps(values, sort_keys=True, ensure_ascii=False).encode()


def chart_name(ref: str) -> str:
    """'loki-stack-2.10.3' -> 'loki-stack' (helm list prints NAME-VERSION)."""
    m = re.match(r"(.+?)-v?\d+\.\d+\.\d+\S*$", ref)
    return m.group(1) if m else ref


# -- results -------------------------------------------------------------------------


@dataclass(frozen=True)
class Applied:
    """What one install step did: 'installed', 'upgraded' or 'unchanged'."""

    name: str
    action: str
    detail: str = ""

    @property
    def changed(self) -> bool:
        return self.action != "unchanged"


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("Error:") or line.startswith("error:"):
            return line.strip()
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[-1] if lines else "no output"


# -- helm ------------------------------------------------------------------------------


class Helm:
    def __init__(self, host: Host, *, kubeconfig: Optional[Path] = None, timeout: float = DEFAULT_TIMEOUT):
        self.host = host
        self.kubeconfig = kubeconfig
        self.timeout = timeout

    def _run(self, argv: Sequence[str], *, input: bytes | None = None, timeout: float | None = 60):
        # helm runs as the user: it reads their kubeconfig and helm cache, never via sudo
        return self.host.run(list(argv), input=input, check=False, sudo=False, timeout=timeout)

    def require(self) -> str:
        """Helm 3 or later must be installed; returns its version (e.g. 'v3.16.2')."""
        r = self._run(["helm", "version", "--short"])
        if r.returncode == 127 or "command not found" in r.err or "No such file" in r.err:
            raise KauditError(
                f"helm is not installed on {self.host.name}",
                f"install Helm 3 ({HELM_INSTALL_URL}), e.g. `brew install helm` or the official script, then rerun",
            )
        if not r.ok:
            raise KauditError(f"`helm version --short` failed: {_first_error_line(r.err or r.out)}", f"check the helm installation ({HELM_INSTALL_URL})")
        text = r.out.strip()
        m = re.search(r"v(\d+)\.(\d+)\.(\d+)", text)
        if not m:
            raise KauditError(f"cannot read helm's version from {text!r}", f"install Helm 3 ({HELM_INSTALL_URL})")
        if int(m.group(1)) < 3:
            raise KauditError(f"helm {m.group(0)} is too old: kaudit needs Helm 3 or later", f"upgrade Helm: {HELM_INSTALL_URL}")
        return m.group(0)

    def installed(self, chart: Chart, namespace: str) -> Optional[dict]:
        """The release as `helm list` shows it, or None."""
        r = self._run(list_argv(chart.release, namespace, self.kubeconfig))
        if not r.ok:
            raise KauditError(
                f"cannot list Helm releases in namespace {namespace}: {_first_error_line(r.err or r.out)}",
                "check that the cluster is reachable with this kubeconfig" + (f" ({self.kubeconfig})" if self.kubeconfig else ""),
            )
        try:
            rows = json.loads(r.out or "[]") or []
        except json.JSONDecodeError:
            raise KauditError(f"`helm list -o json` printed something that is not JSON: {r.out[:80]!r}") from None
        for row in rows:
            if row.get("name") == chart.release:
                return row
        return None

    def current_values(self, release: str, namespace: str) -> Any:
        r = self._run(get_values_argv(release, namespace, self.kubeconfig))
        if not r.ok:
            raise KauditError(f"cannot read the values of release {release}: {_first_error_line(r.err or r.out)}")
        try:
            return json.loads(r.out or "null")
        except json.JSONDecodeError:
            raise KauditError(f"`helm get values {release} -o json` printed something that is not JSON") from None

    def is_current(self, chart: Chart, namespace: str, values: Any) -> tuple[bool, Optional[dict]]:
        """(True, row) when the release is deployed with this chart version and exactly these values."""
        row = self.installed(chart, namespace)
        if row is None:
            return False, None
        if row.get("status") != "deployed" or row.get("chart") != chart.ref:
            return False, row
        return self.current_values(chart.release, namespace) == json.loads(values_json(values)), row

    def plan(self, chart: Chart, namespace: str, values: Any) -> str:
        """What ensure() would do: 'install', 'upgrade' or 'unchanged' (read-only)."""
        same, row = self.is_current(chart, namespace, values)
        if row is not None and chart_name(str(row.get("chart", ""))) != chart.chart:
            # e.g. --stack loki over a loki-stack install: same release name, other chart;
            # an in-place upgrade would fight over immutable StatefulSet selectors
            raise KauditError(
                f"release {chart.release} in namespace {namespace} runs chart {row.get('chart')}, not {chart.chart}",
                f"remove it first (`helm uninstall {chart.release} -n {namespace}` or `kaudit down --purge-charts`), then rerun",
            )
        if same:
            return "unchanged"
        return "install" if row is None else "upgrade"

    def apply(self, chart: Chart, namespace: str, values: Any, action: str, watch: Any = None) -> Applied:
        """Run `helm upgrade --install` (action is plan()'s answer, for the message).

        With a kaudit.adapters.rollout_watch.RolloutWatch, the namespace is watched while helm waits
        and what is stuck is reported as it happens, and again in the error if helm fails."""
        argv = upgrade_install_argv(chart, namespace, self.timeout, self.kubeconfig)

        def install():
            # the helm wait is bounded by --timeout; leave helm a minute to report its own timeout
            return self._run(argv, input=values_json(values), timeout=self.timeout + 60)

        r = install() if watch is None else watch.while_running(install)
        if not r.ok:
            stuck: list = []
            if watch is not None:
                watch.poll()  # one last look: helm may have failed between two polls
                stuck = watch.findings
            why = f"; {stuck[0].message.splitlines()[0]}" if stuck else ""
            raise KauditError(
                f"helm could not install {chart.release} ({chart.ref}) in namespace {namespace}: {_first_error_line(r.err or r.out)}{why}",
                (f"{stuck[0].hint}; " if stuck else "")
                + f"inspect with `helm status {chart.release} -n {namespace}` and `kubectl -n {namespace} get pods`; "
                f"the command was: {display_command(argv)}",
            )
        done = "installed" if action == "install" else "upgraded"
        return Applied(chart.release, done, f"{chart.ref} {done}")

    def ensure(self, chart: Chart, namespace: str, values: Any, ui: Any = None, watch: Any = None) -> Applied:
        """Install or upgrade the release unless it already has this chart version and these values."""
        action = self.plan(chart, namespace, values)
        if action == "unchanged":
            if ui is not None:
                ui.skip(f"{chart.release}: {chart.ref} already deployed with these values")
            return Applied(chart.release, "unchanged", f"{chart.ref} already deployed with these values")
        if ui is None:
            return self.apply(chart, namespace, values, action, watch)
        verb = "installing" if action == "install" else "upgrading"
        with ui.step(f"{chart.release}: {verb} {chart.ref} from {chart.repo} (helm --wait, up to {go_duration(self.timeout)})"):
            return self.apply(chart, namespace, values, action, watch)


# -- kubectl apply ---------------------------------------------------------------------------

#: client-side apply keeps the whole object in an annotation, limited to 256 KiB
APPLY_LIMIT = 256 * 1024 - 4096
_APPLY_LINE = re.compile(r"^(?P<obj>\S+/\S+) (?P<what>created|configured|unchanged|serverside-applied)\b")


def as_list(objects: Sequence[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": list(objects)}


class Kubectl:
    def __init__(self, host: Host, *, kubeconfig: Optional[Path] = None):
        self.host = host
        self.kubeconfig = kubeconfig

    def apply(self, objects: Sequence[dict], what: str) -> list[Applied]:
        for obj in objects:
            size = len(json.dumps(obj))
            if size > APPLY_LIMIT:
                name = obj.get("metadata", {}).get("name", "?")
                raise KauditError(f"{obj.get('kind')}/{name} is {size} bytes, too big for kubectl apply (256 KiB annotation limit)")
        argv = kubectl_apply_argv(self.kubeconfig)
        r = self.host.run(argv, input=json.dumps(as_list(objects)).encode(), check=False, sudo=False, timeout=120)
        if r.returncode == 127:
            raise KauditError(f"kubectl is not installed on {self.host.name}", "install kubectl: https://kubernetes.io/docs/tasks/tools/")
        if not r.ok:
            raise KauditError(
                f"kubectl could not apply {what}: {_first_error_line(r.err or r.out)}",
                f"the command was: {display_command(argv)}",
            )
        out = []
        for line in r.out.splitlines():
            m = _APPLY_LINE.match(line.strip())
            if m:
                action = {"created": "installed", "configured": "upgraded"}.get(m.group("what"), m.group("what"))
                out.append(Applied(m.group("obj"), action))
        if len(out) != len(objects):
            raise KauditError(f"kubectl apply of {what} reported {len(out)} objects, expected {len(objects)}: {r.out.strip()[:200]!r}")
        return out
