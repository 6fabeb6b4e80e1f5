"""The checks of `kaudit verify`, one function per hop of the pipeline, in the order they run.

Each check gets the shared VerifyContext (and, for node checks, one Node) and
returns a CheckResult: name, status (pass|fail|warn|skip), elapsed seconds, a
one-line detail, and a hint saying what to try when it did not pass. A check
never raises for an expected failure: a KauditError becomes a failed result,
so every hop gets reported even when an earlier one is broken.
"""

# size: the nine checks read top to bottom in the order verify runs them and the report lists
# them (docs/verify.md follows the same order); each is a short section of its own.

from __future__ import annotations

import difflib
import json
import posixpath
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from kaudit.core.errors import KauditError
from kaudit.adapters.hosts.base import Host
from kaudit.shipper import fields as F
from kaudit.core.units import format_duration, format_size
from kaudit.engine.verify import node as N
from kaudit.engine.verify.kube import Kubectl, PortForward, collector_selectors, control_plane_nodes, last_line, kubectl_hint, pod_ready

PASS, FAIL, WARN, SKIP = "pass", "fail", "warn", "skip"
STATUSES = (PASS, FAIL, WARN, SKIP)

#: the checks in the order they run; node checks run once per --host
CHECKS: tuple[tuple[str, str], ...] = (
    ("reachable", "the node answers through the host seam"),
    ("manifest", "the apiserver manifest carries the audit flags and volumes"),
    ("policy", "the audit policy is on the node, valid, and the one chosen"),
    ("apiserver", "kube-apiserver runs with the audit flags and /readyz is ok"),
    ("audit-log", "the audit log exists, grows, and ends with an audit Event"),
    ("webhook", "--mode webhook|both: the webhook flag is set and kaudit's receiver answers over TLS"),
    ("collector", "the collector runs and is ready on every control-plane node"),
    ("loki", "Loki answers /ready"),
    ("probe", "a probe request's audit event becomes queryable in Loki"),
    ("labels", "audit streams carry the expected labels and are bounded in number"),
)
NODE_CHECKS = ("reachable", "manifest", "policy", "apiserver", "audit-log", "webhook")

#: the log must have been written within this many seconds
LOG_FRESH_S = 60.0


@dataclass
class CheckResult:
    name: str
    status: str
    elapsed_s: float
    detail: str
    hint: Optional[str] = None
    node: Optional[str] = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status != FAIL

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "node": self.node,
            "status": self.status,
            "elapsed_s": round(self.elapsed_s, 3),
            "detail": self.detail,
            "hint": self.hint,
            "data": self.data,
        }


@dataclass
class Verdict:
    """What a check function returns; the runner adds name, node and elapsed time."""

    status: str
    detail: str
    hint: Optional[str] = None
    data: dict[str, Any] = field(default_factory=dict)


def passed(detail: str, **data: Any) -> Verdict:
    return Verdict(PASS, detail, None, data)


def failed(detail: str, hint: str, **data: Any) -> Verdict:
    return Verdict(FAIL, detail, hint, data)


def warned(detail: str, hint: str, **data: Any) -> Verdict:
    return Verdict(WARN, detail, hint, data)


def skipped(detail: str, **data: Any) -> Verdict:
    return Verdict(SKIP, detail, None, data)


# --------------------------------------------------------------------------- settings and context


@dataclass(frozen=True)
class Settings:
    """What verify compares the cluster with. ``spec`` is the kaudit.core.manifest.AuditSpec
    the user chose (the same audit options as `kaudit up`)."""

    spec: Any
    policy_profile: Optional[str] = None
    policy_file: Optional[Path] = None  # the user's own policy, on this machine
    audit_log: Optional[str] = None  # overrides the path found in the apiserver flags
    manifest_path: str = N.MANIFEST
    kubeconfig: Optional[Path] = None
    loki_url: Optional[str] = None
    loki_tenant: Optional[str] = None
    #: credentials for an existing Loki (kaudit.core.loki_auth.LokiCredentials)
    loki_auth: Any = None
    #: the cluster label every audit stream of this cluster must carry (None: not checked)
    cluster: Optional[str] = None
    loki_namespace: str = "kaudit"
    loki_service: str = "loki"
    loki_port: int = 3100
    collector: str = "auto"  # promtail | shipper | alloy | none | auto
    timeout: float = 60.0  # how long the probe waits for its event in Loki
    job: str = F.DEFAULT_JOB
    labels: tuple[str, ...] = F.DEFAULT_LABELS
    max_streams: int = 1000
    probe_namespace: str = "default"


@dataclass
class Node:
    """One --host: how it is named in the report, and how to open it."""

    label: str
    opener: Callable[[], Host]
    host: Optional[Host] = None
    error: Optional[KauditError] = None
    #: False when the caller (kaudit up) opened the host and will close it
    owned: bool = True
    #: facts found by earlier checks for later ones (manifest flags, apiserver flags)
    facts: dict[str, Any] = field(default_factory=dict)

    def open(self) -> Host:
        if self.host is None:
            self.host = self.opener()
        return self.host


@dataclass
class VerifyContext:
    settings: Settings
    nodes: list[Node]
    local: Host  # this machine (kubectl with --kubeconfig, the port-forward)
    facts: dict[str, Any] = field(default_factory=dict)
    port_forward: Optional[PortForward] = None
    loki: Any = None  # kaudit.adapters.loki.LokiClient once the loki check passed
    loki_url: Optional[str] = None
    progress: Callable[[str], None] = lambda msg: None

    @property
    def kubectl_reason(self) -> Optional[str]:
        """Why kubectl cannot run (no reachable node and no --kubeconfig), else None."""
        if self.settings.kubeconfig is None and all(n.host is None or n.error is not None for n in self.nodes):
            return "no node is reachable to run kubectl on, and no --kubeconfig was given"
        return None

    @property
    def kube(self) -> Kubectl:
        node = next((n.host for n in self.nodes if n.host is not None and n.error is None), None)
        return Kubectl(node, self.settings.kubeconfig, self.local)

    def close(self) -> None:
        if self.port_forward is not None:
            self.port_forward.stop()
            self.port_forward = None
        if self.loki is not None:
            self.loki.close()
        for n in self.nodes:
            if n.host is not None and n.owned:
                n.host.close()


# --------------------------------------------------------------------------- 1. reachable


def check_reachable(ctx: VerifyContext, node: Node) -> Verdict:
    try:
        host = node.open()
    except KauditError as e:
        node.error = e
        msg = e.message if node.label in e.message else f"cannot open {node.label}: {e.message}"
        return failed(msg, e.hint or "check --host and the SSH options")
    rootfs = N.rootfs_of(host)
    if rootfs is not None and not Path(rootfs).is_dir():
        node.error = KauditError(f"{rootfs} is not a directory")
        return failed(f"--rootfs {rootfs} is not a directory", "pass the directory that holds the node's files")
    t0 = time.monotonic()
    try:
        r = host.run(["uname", "-n"], check=False, sudo=False, timeout=30)
    except KauditError as e:
        node.error = e
        msg = e.message if node.label in e.message else f"{node.label}: {e.message}"
        return failed(msg, e.hint or "check that the node is up and reachable")
    if not r.ok:
        node.error = KauditError(r.err.strip())
        return failed(
            f"{node.label}: `uname -n` failed: {last_line(r)}",
            "check that the node is up, and the user may log in and run commands",
        )
    hostname = r.out.strip()
    where = f"rootfs {rootfs}" if rootfs is not None else f"hostname {hostname}"
    return passed(f"{node.label} answers ({where}, {format_duration(time.monotonic() - t0)})", hostname=hostname)


# --------------------------------------------------------------------------- 2. manifest


def check_manifest(ctx: VerifyContext, node: Node) -> Verdict:
    from kaudit.core.manifest import audit_flags_in, manifest_diff, patch_manifest

    host = node.open()
    path = ctx.settings.manifest_path
    try:
        text = host.read_file(path).decode("utf-8")
    except KauditError as e:
        return failed(f"{e.message}", "is this a kubeadm control-plane node? (kaudit up --only apiserver writes it)")
    source = f"{node.label}:{path}"
    flags = audit_flags_in(text, source=source)
    node.facts["manifest_flags"] = flags
    patched = patch_manifest(text, ctx.settings.spec, source=source)
    if patched == text:
        return passed(f"{path} carries the {len(ctx.settings.spec.flags())} audit flags and both volumes", flags=flags)
    diff = manifest_diff(text, patched, path, path)
    changes = [line[1:].strip() for line in diff.splitlines() if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    missing = [k for k, v in ctx.settings.spec.flags().items() if flags.get(k) != v]
    what = f"flags --{', --'.join(missing)}" if missing else "the audit volumes or mounts"
    return failed(
        f"{path} lacks {what} ({len(changes)} changed lines)",
        "see `kaudit diff-manifest`; `kaudit up --only policy,apiserver` applies it",
        missing_flags=missing,
        changes=changes[:20],
    )


# --------------------------------------------------------------------------- 3. policy


def check_policy(ctx: VerifyContext, node: Node) -> Verdict:
    from kaudit.core import policy as P

    host = node.open()
    s = ctx.settings
    path = node.facts.get("manifest_flags", {}).get("audit-policy-file") or s.spec.policy_path
    try:
        text = host.read_file(path).decode("utf-8", "replace")
    except KauditError:
        return failed(
            f"no audit policy at {path} on {node.label}",
            "kaudit up --only policy writes it",
            path=path,
        )
    problems, _warnings = P.check_policy(text, f"{node.label}:{path}")
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return failed(
            f"not a valid audit policy: {problems[0]}{more}",
            "kaudit up --only policy rewrites it; `kaudit policy validate FILE` lists every problem",
            path=path,
        )
    if s.policy_file is not None:
        try:
            want = Path(s.policy_file).read_text(encoding="utf-8")
        except OSError as e:
            return failed(f"cannot read --policy-file {s.policy_file}: {e.strerror}", "check the path", path=path)
        chosen = f"your file {s.policy_file}"
    else:
        profile = s.policy_profile or getattr(P, "DEFAULT_PROFILE", P.PROFILES[0])
        want = P.policy_text(profile)
        chosen = f"profile {profile}"
    if text == want:
        return passed(f"{path} is valid and equal to {chosen}", path=path)
    if _same_yaml(text, want):
        return passed(f"{path} is valid and has the same rules as {chosen} (formatting differs)", path=path)
    changed = sum(
        1 for line in difflib.unified_diff(want.splitlines(), text.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    )
    return failed(
        f"{path} differs from {chosen} ({changed} lines differ)",
        "kaudit up --only policy rewrites it; or pass the policy you meant with --policy-file/--policy-profile",
        path=path,
        lines_differ=changed,
    )


def _same_yaml(a: str, b: str) -> bool:
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    try:
        return yaml.load(a) == yaml.load(b)
    except Exception:  # not YAML: the texts differ, and validate_policy said why
        return False


# --------------------------------------------------------------------------- 4. apiserver


def check_apiserver(ctx: VerifyContext, node: Node) -> Verdict:
    host = node.open()
    procs = N.find_apiserver(host)
    if not procs:
        return failed(
            f"kube-apiserver is not running on {node.label}",
            "kubelet may be restarting it: look at `crictl ps -a --name kube-apiserver` and `journalctl -u kubelet` on the node",
        )
    proc = procs[-1]
    flags = N.parse_flags(proc.args)
    node.facts["apiserver_flags"] = flags
    want = ctx.settings.spec.flags()
    wrong = {k: flags.get(k) for k, v in want.items() if flags.get(k) != v}
    if wrong:
        parts = [f"--{k}={v}" if v is not None else f"no --{k}" for k, v in wrong.items()]
        return failed(
            f"kube-apiserver (pid {proc.pid}) runs with {', '.join(parts)}; kaudit expects "
            + ", ".join(f"--{k}={want[k]}" for k in wrong),
            "kubelet restarts it when the manifest changes: check the manifest (kaudit diff-manifest) and `journalctl -u kubelet`",
            source=proc.source,
        )
    policy = flags["audit-policy-file"]
    paths = [("--audit-policy-file", policy)]
    if "audit-log-path" in want:  # not in --mode webhook
        paths.append(("the directory of --audit-log-path", posixpath.dirname(flags["audit-log-path"]) or "/"))
    for what, p in paths:
        if not host.exists(p):
            shown = N.mapped(host, p)
            return failed(
                f"{what} {p} does not exist on {node.label}" + (f" (looked at {shown})" if shown != p else ""),
                "kaudit up --only policy,apiserver writes the policy and mounts the log directory",
            )
    kube = Kubectl(host, ctx.settings.kubeconfig, ctx.local)
    r = kube.run(["get", "--raw", "/readyz"])
    if not r.ok or r.out.strip() != "ok":
        return failed(
            f"kube-apiserver runs with the audit flags but /readyz is not ok: {last_line(r)}",
            "`kubectl get --raw '/readyz?verbose'` shows which check fails; " + kubectl_hint(r),
            source=proc.source,
        )
    return passed(
        f"kube-apiserver (pid {proc.pid}) runs with the {len(want)} audit flags; /readyz ok",
        source=proc.source,
        pid=proc.pid,
    )


# --------------------------------------------------------------------------- 5. audit log


def check_audit_log(ctx: VerifyContext, node: Node) -> Verdict:
    if not getattr(ctx.settings.spec, "writes_log", True):
        return skipped("--mode webhook: kube-apiserver writes no audit log; the webhook check follows")
    host = node.open()
    path = (
        ctx.settings.audit_log
        or node.facts.get("apiserver_flags", {}).get("audit-log-path")
        or node.facts.get("manifest_flags", {}).get("audit-log-path")
        or ctx.settings.spec.log_path
    )
    st = host.stat(path)
    if st is None:
        return failed(
            f"no audit log at {path} on {node.label}",
            "check --audit-log-path and that its directory is a hostPath mount (kaudit diff-manifest)",
            path=path,
        )
    if st.size == 0:
        return failed(f"{path} is empty", "the apiserver writes a line per audited request; is the policy all `None`?", path=path)
    age = max(0.0, N.node_now(host) - st.mtime)
    if age > LOG_FRESH_S:
        return failed(
            f"{path} was last written {format_duration(age)} ago (size {format_size(st.size)})",
            "the apiserver writes it on every request; check that it runs with --audit-log-path="
            f"{path} (a rotated log is renamed, and a new file is created)",
            path=path,
            age_s=round(age, 1),
        )
    try:
        line = N.last_complete_line(host, path, st.size)
    except (KauditError, OSError) as e:
        return failed(f"cannot read {path}: {e}", "check permissions on the node", path=path)
    if line is None:
        return failed(f"{path} has no complete line", "wait for the apiserver to write a whole event", path=path)
    try:
        event = json.loads(line)
    except ValueError:
        return failed(
            f"the last line of {path} is not JSON: {line[:60]!r}",
            "kube-apiserver writes JSON with --audit-log-format=json (the default); check the flags",
            path=path,
        )
    if not (isinstance(event, dict) and event.get("kind") == "Event" and str(event.get("apiVersion", "")).startswith("audit.k8s.io/")):
        return failed(
            f"the last line of {path} is JSON but not an audit Event",
            "is --audit-log-path pointing at the apiserver's audit log?",
            path=path,
        )
    verb = event.get("verb", "?")
    res = (event.get("objectRef") or {}).get("resource") or event.get("requestURI", "?")
    return passed(
        f"{path}: {format_size(st.size)}, written {format_duration(age)} ago, last event {verb} {res}",
        path=path,
        size=st.size,
        age_s=round(age, 1),
    )


# --------------------------------------------------------------------------- 6. collector


def check_collector(ctx: VerifyContext) -> Verdict:
    choice = ctx.settings.collector
    if choice == "none":
        return skipped("--collector none: audit events are shipped by something kaudit does not manage")
    kube = ctx.kube
    try:
        nodes = control_plane_nodes(kube)
    except KauditError as e:
        return failed(e.message, e.hint or "check kubectl access to the cluster")
    if not nodes:
        return failed("the cluster lists no control-plane node (label node-role.kubernetes.io/control-plane)", "check `kubectl get nodes --show-labels`")
    selectors = collector_selectors()
    names = list(selectors) if choice == "auto" else [choice]
    found: dict[str, list[dict]] = {}
    for name in names:
        try:
            doc = kube.get_json(["pods", "--all-namespaces", "-l", selectors[name]])
        except KauditError as e:
            return failed(e.message, e.hint or "check kubectl access to the cluster")
        pods = [p for p in doc.get("items") or [] if (p.get("spec") or {}).get("nodeName")]
        if pods:
            found[name] = pods
            break  # auto: the first collector that has pods is the one in use
    if not found:
        which = "promtail, shipper or alloy" if choice == "auto" else choice
        return failed(
            f"no {which} pods run in the cluster",
            "kaudit up --only collector installs it; or pass --collector none if another agent ships the log",
        )
    name, pods = next(iter(found.items()))
    missing, not_ready = [], []
    for n in nodes:
        on_node = [p for p in pods if p["spec"]["nodeName"] == n]
        if not on_node:
            missing.append(n)
        elif not any(pod_ready(p) for p in on_node):
            p = on_node[0]
            not_ready.append(f"{p['metadata'].get('namespace')}/{p['metadata'].get('name')} on {n} ({p.get('status', {}).get('phase', '?')})")
    if missing:
        return failed(
            f"{name} has no pod on control-plane node(s) {', '.join(missing)}",
            f"control-plane nodes are tainted: the {name} DaemonSet needs a toleration for node-role.kubernetes.io/control-plane",
            collector=name,
        )
    if not_ready:
        return failed(
            f"{name} is not ready: {'; '.join(not_ready)}",
            f"kubectl describe pod / kubectl logs on the {name} pod says why",
            collector=name,
        )
    return passed(f"{name} is running and ready on {len(nodes)} control-plane node(s): {', '.join(nodes)}", collector=name, nodes=nodes)


# --------------------------------------------------------------------------- 7. loki


def check_loki(ctx: VerifyContext) -> Verdict:
    from kaudit.adapters.loki import LokiClient

    s = ctx.settings
    url = s.loki_url
    via = ""
    if not url:
        pf = PortForward(ctx.kube.local_kubeconfig(), s.loki_namespace, s.loki_service, s.loki_port)
        try:
            url = pf.start()
        except KauditError as e:
            return failed(e.message, e.hint or "pass --loki-url")
        ctx.port_forward = pf
        via = f" (port-forward to {pf.target})"
    client = LokiClient(url, timeout=10.0, tenant=s.loki_tenant, auth=s.loki_auth)
    try:
        state = client.ready()
    except KauditError as e:
        client.close()
        return failed(e.message, e.hint or "check Loki", url=url)
    version = None
    try:
        version = client.buildinfo().get("version")
    except KauditError:
        pass  # older Loki or a proxy without build info: /ready is what counts
    ctx.loki, ctx.loki_url = client, url
    return passed(f"{url} answers /ready: {state}{via}" + (f", Loki {version}" if version else ""), url=url, version=version)


# --------------------------------------------------------------------------- 8. probe


def check_probe(ctx: VerifyContext) -> Verdict:
    s = ctx.settings
    name = f"kaudit-probe-{uuid.uuid4().hex[:12]}"
    kube = ctx.kube
    t0 = time.time()
    r = kube.run(["get", "configmap", name, "-n", s.probe_namespace])
    text = r.err + r.out
    if not r.ok and "NotFound" not in text and "not found" not in text:
        return failed(
            f"the probe request `kubectl get configmap {name}` failed: {last_line(r)}",
            kubectl_hint(r),
            probe=name,
        )
    from kaudit.core.query import logql_string

    query = f"{{{F.JOB_LABEL}={logql_string(s.job)}}} |= {logql_string(name)}"
    deadline = t0 + s.timeout
    delay = 0.25
    polls = 0
    while True:
        polls += 1
        try:
            data = ctx.loki.query_range(query, start_ns=int((t0 - 300) * 1e9), end_ns=int((time.time() + 60) * 1e9), limit=20)
        except KauditError as e:
            return failed(f"querying Loki for the probe failed: {e.message}", e.hint or "check Loki", probe=name, query=query)
        found = _probe_event(data, name)
        if found is not None:
            event, labels = found
            latency = time.time() - t0
            if s.cluster is not None and labels.get(F.CLUSTER_LABEL) != s.cluster:
                got = labels.get(F.CLUSTER_LABEL)
                return failed(
                    f"the probe's audit event reached Loki with {F.CLUSTER_LABEL}={got!r}, not {s.cluster!r}"
                    if got is not None else f"the probe's audit event reached Loki without a {F.CLUSTER_LABEL} label (expected {s.cluster!r})",
                    "kaudit up --cluster-name NAME --only collector sets it; or pass the cluster's name with --cluster",
                    probe=name, labels=labels, query=query,
                )
            return passed(
                f"audit event of `get configmaps/{name}` queryable after {format_duration(latency)}",
                probe=name,
                latency_s=round(latency, 3),
                audit_id=event.get("auditID"),
                query=query,
                **({"cluster": s.cluster} if s.cluster is not None else {}),
            )
        now = time.time()
        if now >= deadline:
            return failed(
                f"no audit event for {name} in Loki after {format_duration(now - t0)} ({polls} queries)",
                "follow the event: is it in the audit log on the node (grep "
                f"{name})? then the collector's logs; the query was: {query}",
                probe=name,
                query=query,
            )
        ctx.progress(f"waiting for the probe event ({format_duration(now - t0)})")
        time.sleep(min(delay, max(0.0, deadline - now)))
        delay = min(delay * 1.6, 1.0)  # at most a second late in the reported latency


def _probe_event(data: dict, name: str) -> Optional[tuple[dict, dict]]:
    """The probe's event and its stream labels."""
    from kaudit.adapters.loki import stream_entries

    for _ts, line, labels in stream_entries(data):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and (event.get("objectRef") or {}).get("name") == name:
            return event, labels
    return None


# --------------------------------------------------------------------------- 9. labels


#: labels Loki or collectors add themselves; not kaudit's to judge
_AMBIENT = {"service_name", "detected_level", "filename", "__stream_shard__"}
#: more distinct values than this in one label is a warning (Loki: "10's of values")
DISTINCT_WARN = 100


def check_labels(ctx: VerifyContext) -> Verdict:
    s = ctx.settings
    from kaudit.core.query import logql_string

    # with a cluster: only this cluster's streams count (several clusters may share the Loki)
    cluster = f", {F.CLUSTER_LABEL}={logql_string(s.cluster)}" if s.cluster is not None else ""
    match = f"{{{F.JOB_LABEL}={logql_string(s.job)}{cluster}}}"
    now = time.time()
    try:
        streams = ctx.loki.series(match, start_ns=int((now - 3600) * 1e9), end_ns=int((now + 60) * 1e9))
    except KauditError as e:
        return failed(e.message, e.hint or "check Loki")
    if not streams:
        return failed(
            f"Loki has no stream {match} in the last hour",
            f"the collector must set {F.JOB_LABEL}={s.job}; check its config (kaudit render-promtail)",
        )
    required = (F.JOB_LABEL, *((F.CLUSTER_LABEL,) if s.cluster is not None else ()), *s.labels)
    lacking = {}
    for st in streams:
        for lbl in required:
            if lbl not in st:
                lacking[lbl] = lacking.get(lbl, 0) + 1
    values: dict[str, set] = {}
    for st in streams:
        for k, v in st.items():
            values.setdefault(k, set()).add(v)
    data = {"streams": len(streams), "labels": sorted(values), "distinct": {k: len(v) for k, v in sorted(values.items())}}
    if lacking:
        what = ", ".join(f"{k} (missing in {n} of {len(streams)} streams)" for k, n in lacking.items())
        return failed(
            f"audit streams lack expected labels: {what}",
            "the collector's label stage must set " + ", ".join(s.labels) + " (kaudit render-promtail shows it)",
            **data,
        )
    if len(streams) > s.max_streams:
        return failed(
            f"{len(streams)} audit streams in the last hour, more than {s.max_streams}",
            "a label with unbounded values is splitting the log; keep labels to " + ", ".join(s.labels),
            **data,
        )
    high = sorted(k for k in values if k in F.HIGH_CARDINALITY)
    many = sorted(k for k, v in values.items() if len(v) > DISTINCT_WARN and k not in _AMBIENT and k not in high)
    if high or many:
        parts = [f"{k} ({F.HIGH_CARDINALITY[k]})" for k in high] + [f"{k} ({len(values[k])} values)" for k in many]
        return warned(
            f"{len(streams)} streams; high-cardinality label(s): {', '.join(parts)}",
            "drop these labels from the collector; they are queryable with | json or structured metadata",
            **data,
        )
    shown = ", ".join(k for k in sorted(values) if k not in _AMBIENT)
    return passed(f"{len(streams)} streams, labels {shown}", **data)
