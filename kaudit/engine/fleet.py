"""`-f clusters.yaml`: run up, down, verify or diff-manifest on every cluster of an inventory.

Clusters run side by side, at most --parallel at once (threads: the work is waiting on
SSH, kubectl and helm). One cluster failing never stops the others; the summary names
every cluster with its result, and the exit code is 1 when any failed (4 for verify).
Each cluster's narrative goes through its own UI: on a terminal a live table shows
every cluster's current step, elsewhere each line is printed as "[name] line".
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from kaudit.core.errors import ExitCode, KauditError, UsageError
from kaudit.engine.ui import UI

DEFAULT_PARALLEL = 4


# --------------------------------------------------------------------------- loading


def load(path: Path):
    """The parsed inventory (kaudit.core.inventory.Inventory); errors name file:line:field."""
    from kaudit.core.inventory import parse_inventory

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"-f {path}: no such file", "give the inventory file (docs/inventory.md)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"-f {path}: cannot read it: {getattr(e, 'strerror', None) or e}") from None
    return parse_inventory(text, str(path), str(Path(path).resolve().parent))


def loki_credentials(loki):
    """LokiCredentials for the inventory's loki section (files and variables it names)."""
    from kaudit.adapters.loki_credentials import PASSWORD_ENV, TOKEN_ENV, load as load_creds

    if loki is None:
        return None
    return load_creds(
        username=loki.username,
        password_file=Path(loki.password_file) if loki.password_file else None,
        token_file=Path(loki.token_file) if loki.token_file else None,
        ca_file=Path(loki.ca_file) if loki.ca_file else None,
        password_env=loki.password_env or PASSWORD_ENV,
        token_env=loki.token_env or TOKEN_ENV,
        where=f"{loki.where}: loki.",
    )


def host_options(c):
    from kaudit.engine.targets import HostOptions

    return HostOptions(
        c.hosts,
        rootfs=Path(c.rootfs) if c.rootfs else None,
        ssh_key=Path(c.ssh_key) if c.ssh_key else None,
        accept_new_host_key=c.accept_new_host_key,
        known_hosts=Path(c.known_hosts) if c.known_hosts else None,
    )


# --------------------------------------------------------------------------- progress


class Progress:
    """Per-cluster progress: a rich live table on a terminal, prefixed plain lines elsewhere."""

    def __init__(self, ui: UI, names: list[str]):
        self.ui = ui
        self.names = names
        self.state = {n: ["waiting", "", None] for n in names}  # status, last line, start time
        self.lock = threading.Lock()
        self.live = None
        self.width = max(len(n) for n in names)

    def __enter__(self) -> "Progress":
        if self.ui.is_tty and not self.ui.quiet:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(file=self.ui.stream), refresh_per_second=4, transient=True)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)

    def _table(self):
        from rich.table import Table

        t = Table(box=None, header_style="bold")
        for col in ("cluster", "state", "time", "now"):
            t.add_column(col, overflow="ellipsis", no_wrap=True)
        for n in self.names:
            status, line, start = self.state[n]
            took = f"{time.monotonic() - start:.0f}s" if start else ""
            t.add_row(n, status, took, line[-100:])
        return t

    def set(self, name: str, status: str) -> None:
        with self.lock:
            self.state[name][0] = status
            if status == "running":
                self.state[name][2] = time.monotonic()
            self._refresh()
        if self.live is None and status in ("running",):
            self.ui.info(f"[{name:<{self.width}}] started")

    def line(self, name: str, text: str) -> None:
        with self.lock:
            if text.strip():
                self.state[name][1] = text.strip().splitlines()[-1]
            self._refresh()
            if self.live is None and not self.ui.quiet:
                for ln in text.splitlines() or [""]:
                    print(f"[{name:<{self.width}}] {ln}", file=self.ui.stream, flush=True)

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table())


class ClusterUI(UI):
    """A UI whose lines go to one cluster's row of the progress display."""

    def __init__(self, progress: Progress, name: str, base: UI):
        super().__init__(verbose=base.verbose, quiet=base.quiet, stream=base.stream)
        self.progress, self.name = progress, name

    @property
    def is_tty(self) -> bool:
        return False  # no nested rich status lines: the progress display owns the terminal

    def _print(self, text: str) -> None:
        self.progress.line(self.name, text)


# --------------------------------------------------------------------------- the runner


@dataclass
class ClusterResult:
    name: str
    ok: bool
    detail: str
    elapsed: float
    exit_code: int = 0
    data: Any = None


def run_all(ui: UI, inventory, work: Callable[[Any, ClusterUI], ClusterResult], *, parallel: Optional[int], verb: str) -> list[ClusterResult]:
    """work(cluster, ui) for every cluster, at most `parallel` at once; never raises for one cluster."""
    names = [c.name for c in inventory.clusters]
    n = parallel or inventory.parallel or DEFAULT_PARALLEL
    ui.info(f"kaudit {verb}: {len(names)} cluster(s) from {inventory.source}, {min(n, len(names))} at a time")
    results: dict[str, ClusterResult] = {}
    with Progress(ui, names) as progress:

        def one(c) -> None:
            progress.set(c.name, "running")
            cui = ClusterUI(progress, c.name, ui)
            t0 = time.monotonic()
            try:
                r = work(c, cui)
            except KauditError as e:
                cause = getattr(e, "cause", e)
                r = ClusterResult(c.name, False, cause.message + (f" ({cause.hint})" if cause.hint else ""), 0.0, exit_code=int(getattr(e, "exit_code", 1) or 1))
            except Exception as e:  # a bug in one cluster's run must not take the others down
                r = ClusterResult(c.name, False, f"internal error: {type(e).__name__}: {e}", 0.0, exit_code=1)
            r.elapsed = time.monotonic() - t0
            results[c.name] = r
            progress.set(c.name, "ok" if r.ok else "FAILED")
            if not r.ok:
                progress.line(c.name, f"failed: {r.detail}")

        with ThreadPoolExecutor(max_workers=n, thread_name_prefix="kaudit-cluster") as pool:
            list(pool.map(one, inventory.clusters))
    ordered = [results[name] for name in names]
    summary(ui, ordered, verb)
    return ordered


def summary(ui: UI, results: list[ClusterResult], verb: str) -> None:
    failed = [r for r in results if not r.ok]
    rows = [(r.name, "ok" if r.ok else "FAILED", f"{r.elapsed:.1f}s", r.detail) for r in results]
    ui.info("")
    if ui.is_tty and not ui.quiet:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        t = Table(title=f"kaudit {verb}: clusters", header_style="bold")
        for col in ("cluster", "result", "time", "detail"):
            t.add_column(col, overflow="fold")
        for name, status, took, detail in rows:
            t.add_row(escape(name), f"[red]{status}[/red]" if status == "FAILED" else f"[green]{status}[/green]", took, escape(detail))
        Console(file=ui.stream).print(t)
    else:
        ui.info(f"kaudit {verb} summary (clusters):")
        header = ("cluster", "result", "time", "detail")
        widths = [max(len(x[i]) for x in [header, *rows]) for i in range(3)]
        for row in [header, *rows]:
            ui.info("  " + "  ".join(v.ljust(w) for v, w in zip(row[:3], widths)) + "  " + row[3])
    if failed:
        ui.info(f"{len(failed)} of {len(results)} cluster(s) failed: {', '.join(r.name for r in failed)}")
    else:
        ui.info(f"all {len(results)} cluster(s) ok")


# --------------------------------------------------------------------------- up / down


def cluster_options(opts, c, loki, creds):
    """The UpOptions of one cluster: the command line's, then the inventory's loki and options."""
    fields: dict[str, Any] = {"cluster_name": c.name}
    if c.kubeconfig:
        fields["kubeconfig"] = Path(c.kubeconfig)
    if loki is not None:
        fields.update(loki_url=loki.url, loki_tenant=loki.tenant or getattr(opts, "loki_tenant", None), loki_auth=creds)
    for key, value in c.options.items():
        fields[key] = Path(value) if key == "policy_file" else value
    return replace(opts, **fields)


def up_inventory(ui: UI, path: Path, phases, opts, *, parallel: Optional[int], dry_run: bool, verb: str) -> int:
    from kaudit.engine.run import run_phases

    inv = load(path)
    if inv.loki is not None and getattr(opts, "loki_url", None):
        raise UsageError(f"--loki-url and the loki section of {path} both name a Loki", "keep one of them")
    creds = loki_credentials(inv.loki) if inv.loki is not None else getattr(opts, "loki_auth", None)
    for c in inv.clusters:  # every file is checked before any cluster is touched
        for key in ("kubeconfig", "ssh_key", "known_hosts", "rootfs"):
            value = getattr(c, key)
            if value and not Path(value).exists():
                raise UsageError(f"{c.where}: {c.name}.{key} {value}: no such file or directory", "fix the path (relative paths start at the inventory's directory)")
        policy = c.options.get("policy_file")
        if policy and not Path(policy).is_file():
            raise UsageError(f"{c.where}: {c.name}.options.policy_file {policy}: no such file")

    def work(c, cui: ClusterUI) -> ClusterResult:
        copts = cluster_options(opts, c, inv.loki, creds)
        rows: list = []
        run_phases(cui, host_options(c), phases, copts, dry_run=dry_run, verb=verb, rows=rows)
        counts: dict[str, int] = {}
        for r in rows:
            counts[r[2]] = counts.get(r[2], 0) + 1
        detail = ", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing to do"
        return ClusterResult(c.name, True, f"{detail} ({len(c.hosts)} host(s))", 0.0)

    if dry_run:  # the manifest diffs go to stdout: one cluster at a time keeps each whole and in file order
        parallel = 1
    results = run_all(ui, inv, work, parallel=parallel, verb=verb)
    return ExitCode.OK if all(r.ok for r in results) else ExitCode.ERROR


# --------------------------------------------------------------------------- verify


def verify_inventory(ui: UI, path: Path, base, *, parallel: Optional[int], as_json: bool) -> int:
    import json
    import sys

    from kaudit.engine.verify import session

    inv = load(path)
    if inv.loki is not None and base.loki_url:
        raise UsageError(f"--loki-url and the loki section of {path} both name a Loki", "keep one of them")
    creds = loki_credentials(inv.loki) if inv.loki is not None else base.loki_auth

    def work(c, cui: ClusterUI) -> ClusterResult:
        changes: dict = {"cluster": c.name, "loki_auth": creds}
        if c.kubeconfig:
            changes["kubeconfig"] = Path(c.kubeconfig)
        if inv.loki is not None:
            changes.update(loki_url=inv.loki.url, loki_tenant=inv.loki.tenant or base.loki_tenant)
        if c.options.get("collector") == "none":
            changes["collector"] = "none"
        settings = replace(base, **changes)
        hosts = host_options(c)
        nodes = [session.Node(name, lambda name=name: hosts.open(name)) for name in hosts.hosts]
        results, doc = session.verify(settings, nodes, ui=cui, stream=None)
        bad = [r for r in results if r.status == "fail"]
        detail = f"{len(bad)} check(s) failed: " + "; ".join(f"{r.name}{' on ' + r.node if r.node else ''}: {r.detail}" for r in bad[:2]) if bad \
            else f"{len(results)} checks passed"
        for r in results:
            cui.info(f"{r.status:<4} {r.name}{' on ' + r.node if r.node else ''}: {r.detail}")
        return ClusterResult(c.name, not bad, detail, 0.0, exit_code=doc["exit_code"], data=doc)

    results = run_all(ui, inv, work, parallel=parallel, verb="verify")
    code = ExitCode.OK if all(r.ok for r in results) else ExitCode.VERIFY_FAILED
    if as_json:
        json.dump({"exit_code": int(code), "clusters": [
            {"name": r.name, "ok": r.ok, "detail": r.detail, "elapsed_s": round(r.elapsed, 3), "report": r.data} for r in results
        ]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return code


# --------------------------------------------------------------------------- diff-manifest


def diff_inventory(ui: UI, path: Path, diff_one: Callable[[Any], list[tuple[str, str]]], *, parallel: Optional[int], exit_code: bool) -> int:
    """diff_one(host) -> [(label, diff)] for one node; diffs print on stdout after all clusters, in file order."""
    import sys

    from kaudit.engine.ui import colour_diff

    inv = load(path)
    diffs: dict[str, list[tuple[str, str]]] = {}

    def work(c, cui: ClusterUI) -> ClusterResult:
        hosts = host_options(c)
        out: list[tuple[str, str]] = []
        for spec in hosts.hosts:
            with hosts.open(spec) as node:
                out += diff_one(node, prefix=f"{c.name}/")
        diffs[c.name] = out
        pending = sum(1 for _, d in out if d)
        for label, d in out:
            cui.info(f"{label}: {'changes pending' if d else 'no changes pending'}")
        return ClusterResult(c.name, True, f"{pending} of {len(out)} manifest(s) with changes pending", 0.0)

    results = run_all(ui, inv, work, parallel=parallel, verb="diff-manifest")
    pending = False
    for c in inv.clusters:
        for _label, d in diffs.get(c.name, []):
            if d:
                pending = True
                sys.stdout.write(colour_diff(d, sys.stdout))
    sys.stdout.flush()
    if not all(r.ok for r in results):
        return ExitCode.ERROR
    return ExitCode.CHANGES_PENDING if (pending and exit_code) else ExitCode.OK
