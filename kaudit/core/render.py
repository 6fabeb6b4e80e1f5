"""Render collector configs and chart values from templates/, from ONE pipeline model.

The pipeline model (:func:`build_pipeline`) is computed from kaudit.shipper.fields, the
same table the shipper reads, so Promtail, Alloy and the shipper agree on field names,
labels, structured metadata and the timestamp. Templates only lay the model out in
each tool's syntax; they never name an audit field themselves.

Everything here is pure: strings in, strings out. Side effects (helm, kubectl) live in
kaudit.helm and kaudit.phases.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Iterable, Optional

from kaudit.core.manifest import AuditSpec
from kaudit.errors import KauditError, UsageError
from kaudit.shipper import fields as F

FORMATS: tuple[str, ...] = ("scrape-config", "promtail-config", "helm-values", "alloy")
STYLES: tuple[str, ...] = ("dotted", "seed")

#: where kaudit's apiserver phase makes kube-apiserver write the audit log
DEFAULT_LOG_PATH: str = AuditSpec.log_path
DEFAULT_LOKI_URL = "http://loki.kaudit.svc:3100"
PUSH_PATH = "/loki/api/v1/push"
#: how Promtail/Alloy name the node when --node is not given: the charts set
#: HOSTNAME from spec.nodeName in every collector pod
NODE_ENV = "HOSTNAME"
#: labels the file tailers add on their own; dropped so every collector sends the
#: same label set as the shipper (one exact file: `filename` carries nothing)
TAILER_LABELS: tuple[str, ...] = ("filename",)

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


# -- settings ------------------------------------------------------------------


@dataclass(frozen=True)
class CollectorSettings:
    """What the user chose; validated by :meth:`checked`."""

    log_path: str = DEFAULT_LOG_PATH
    loki_url: str = DEFAULT_LOKI_URL
    job: str = F.DEFAULT_JOB
    #: extra static labels (name, value)
    labels: tuple[tuple[str, str], ...] = ()
    #: dynamic labels taken from the event (bounded fields only)
    dynamic_labels: tuple[str, ...] = F.DEFAULT_LABELS
    tenant: Optional[str] = None
    style: str = "dotted"
    structured_metadata: bool = False
    nest_under_promtail: bool = False
    #: literal node name; None = the collector pod's node (env HOSTNAME)
    node: Optional[str] = None
    #: value of the cluster label (kaudit up --cluster-name); None = no cluster label
    cluster: Optional[str] = None
    #: credentials as files in the collector pod (kaudit.core.loki_auth.PodAuth), for an existing Loki
    auth: Any = None

    def checked(self) -> "CollectorSettings":
        if self.style not in STYLES:
            raise UsageError(f"--style: unknown style {self.style!r}", f"choose one of: {', '.join(STYLES)}")
        if not self.log_path.startswith("/"):
            raise UsageError(f"--log-path: {self.log_path!r} is not an absolute path", "give the file kube-apiserver writes, e.g. " + DEFAULT_LOG_PATH)
        if any(c in self.log_path for c in "*?[{"):
            raise UsageError(
                f"--log-path: {self.log_path!r} is a glob",
                "give the exact active file: a glob also matches rotated audit-<time>.log backups and re-ingests them",
            )
        if not self.job:
            raise UsageError("--job: the job label cannot be empty")
        try:
            F.check_label_names(list(self.dynamic_labels))
        except ValueError as e:
            raise UsageError(f"--dynamic-labels: {e}") from None
        if self.cluster is not None:
            try:
                F.check_cluster_name(self.cluster)
            except ValueError as e:
                raise UsageError(f"--cluster: {e}", "use the cluster's short name, e.g. prod-eu") from None
        taken = {F.JOB_LABEL, F.NODE_LABEL, *self.dynamic_labels, *((F.CLUSTER_LABEL,) if self.cluster else ())}
        for name, _ in self.labels:
            if not _LABEL_NAME.match(name):
                raise UsageError(f"--labels: {name!r} is not a valid Loki label name", "use letters, digits and _ and start with a letter")
            if name.startswith("__"):
                raise UsageError(f"--labels: {name!r} is reserved (labels starting with __ are dropped)")
            if name in taken:
                raise UsageError(f"--labels: {name!r} is already set by kaudit", "use --job for the job label, --cluster for the cluster label")
            if name in F.BY_NAME:
                raise UsageError(f"--labels: {name!r} is an audit field name", "pick a name that cannot be confused with an event field")
            taken.add(name)
        return replace(self, loki_url=push_url(self.loki_url))


def push_url(url: str) -> str:
    """Loki's push URL from a base URL or a push URL (the rendered client URL is always this)."""
    u = url.strip()
    if not re.match(r"https?://[^/\s]+", u):
        raise UsageError(f"--loki-url: {url!r} is not an http(s) URL", "e.g. http://loki.kaudit.svc:3100")
    u = u.rstrip("/")
    if u.endswith(PUSH_PATH):
        return u
    return u + PUSH_PATH


def parse_label_pairs(text: Optional[str]) -> tuple[tuple[str, str], ...]:
    """'k=v,k2=v2' -> (('k','v'), ('k2','v2'))."""
    if not text:
        return ()
    out = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--labels: {item!r} is not NAME=VALUE", "e.g. --labels cluster=lab,env=dev")
        out.append((name.strip(), value.strip()))
    return tuple(out)


# -- the pipeline model (from fields.py) -------------------------------------


@dataclass(frozen=True)
class JsonStage:
    """One json stage: expressions (extracted name -> JMESPath) read from `source` (None = the line)."""

    expressions: tuple[tuple[str, str], ...]
    source: Optional[str] = None


@dataclass(frozen=True)
class Pipeline:
    path: str
    job: str
    node: Optional[str]
    static_labels: tuple[tuple[str, str], ...]
    json_stages: tuple[JsonStage, ...]
    labels: tuple[str, ...]
    structured_metadata: tuple[str, ...]
    #: timestamp stages in the order they run: the fallback first, the preferred last,
    #: because a stage whose source is missing leaves the timestamp as it was
    timestamp_sources: tuple[str, ...]
    timestamp_format: str
    drop_labels: tuple[str, ...]
    push_url: str
    tenant: Optional[str]
    cluster: Optional[str] = None
    #: kaudit.core.loki_auth.PodAuth or None
    auth: Any = None

    def all_static_labels(self) -> tuple[tuple[str, str], ...]:
        """job first, then cluster, then the user's; node is separate because its value may come from the environment."""
        cluster = ((F.CLUSTER_LABEL, self.cluster),) if self.cluster else ()
        return ((F.JOB_LABEL, self.job), *cluster, *self.static_labels)

    def stream_label_names(self) -> tuple[str, ...]:
        """Every label name an entry carries in Loki."""
        return (F.JOB_LABEL, F.NODE_LABEL, *(k for k, _ in self.all_static_labels()[1:]), *self.labels)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def timestamp_fields() -> tuple[F.Field, ...]:
    """The fields carrying the timestamp, preferred first (stageTimestamp, then
    requestReceivedTimestamp); those fields.py does not extract anyway get a snake_case name."""
    out = []
    for key in F.TIMESTAMP_FIELDS:
        known = [f for f in F.FIELDS if f.path == (key,)]
        out.append(known[0] if known else F.Field(_snake(key), (key,)))
    return tuple(out)


def timestamp_field() -> F.Field:
    """The extracted field carrying the preferred timestamp (stageTimestamp)."""
    return timestamp_fields()[0]


def _seed_stages(fields: Iterable[F.Field]) -> tuple[JsonStage, ...]:
    """The seed's layout: top-level keys first, nested objects extracted whole and
    parsed again by a stage with `source:` (one per parent object)."""
    fields = list(fields)
    top: list[tuple[str, str]] = []
    nested: dict[str, list[tuple[str, str]]] = {}
    for f in fields:
        if len(f.path) == 1:
            top.append((f.name, F.Field(f.name, f.path).dotted))
        else:
            parent = f.path[0]
            if parent not in nested:
                nested[parent] = []
                top.append((parent, F.Field(parent, (parent,)).dotted))
            nested[parent].append((f.name, F.Field(f.name, f.path[1:]).dotted))
    stages = [JsonStage(tuple(top))]
    stages += [JsonStage(tuple(exprs), source=parent) for parent, exprs in nested.items()]
    return tuple(stages)


def build_pipeline(settings: CollectorSettings) -> Pipeline:
    s = settings.checked()
    ts_fields = timestamp_fields()
    extract = F.FIELDS + tuple(f for f in ts_fields if f not in F.FIELDS)
    if s.style == "seed":
        stages = _seed_stages(extract)
    else:
        stages = (JsonStage(tuple((f.name, f.dotted) for f in extract)),)
    labels = tuple(s.dynamic_labels)
    sm = F.structured_metadata_for(labels) if s.structured_metadata else ()
    return Pipeline(
        path=s.log_path,
        job=s.job,
        node=s.node,
        static_labels=tuple(s.labels),
        json_stages=stages,
        labels=labels,
        structured_metadata=sm,
        timestamp_sources=tuple(f.name for f in reversed(ts_fields)),
        timestamp_format="RFC3339Nano",
        drop_labels=TAILER_LABELS,
        push_url=s.loki_url,
        tenant=s.tenant or None,
        cluster=s.cluster,
        auth=s.auth,
    )


def logql_json_param(f: F.Field) -> str:
    """The LogQL `| json name="expr"` expression for a field (keys with dots in brackets)."""
    out = ""
    for i, key in enumerate(f.path):
        if key.replace("_", "").isalnum():
            out += key if i == 0 else f".{key}"
        else:
            out += '["' + key.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return out


# -- Helm tpl escaping --------------------------------------------------------

_TPL_OPEN = re.compile(r"\{\{")


def tpl_escape(text: str) -> str:
    """Make text survive Helm's `tpl` unchanged: every literal `{{` becomes the
    action {{ "{{" }}, which prints `{{`. A lone `}}` is plain text to Go templates."""
    return _TPL_OPEN.sub('{{ "{{" }}', text)


# -- YAML / Alloy scalars ------------------------------------------------------

_YAML_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_.\-/]*\Z")
_YAML_RESERVED = {"true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}


def yaml_scalar(value: Any) -> str:
    """A YAML flow scalar that reads back as exactly `value` (a string)."""
    s = str(value)
    if _YAML_PLAIN.match(s) and s.lower() not in _YAML_RESERVED:
        return s
    if any(ord(c) < 32 or c == "\x7f" for c in s):
        return json.dumps(s)  # JSON strings are valid YAML double-quoted scalars
    return "'" + s.replace("'", "''") + "'"


def alloy_string(value: Any) -> str:
    """An Alloy string literal (Go-style escapes, like JSON's)."""
    return json.dumps(str(value), ensure_ascii=False)


# -- the Jinja2 environment ------------------------------------------------------

_env = None


def environment():
    global _env
    if _env is None:
        import jinja2

        from kaudit.resources import resource_dir

        _env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(resource_dir("templates"))),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=False,
        )
        _env.filters["yq"] = yaml_scalar
        _env.filters["aq"] = alloy_string
        _env.filters["tpl_escape"] = tpl_escape
        _env.filters["tojson"] = lambda v: json.dumps(v, ensure_ascii=False)
    return _env


def render_template(template: str, **context: Any) -> str:
    """Render templates/<name>. Errors cite the template and line."""
    import traceback

    import jinja2

    from kaudit import __version__

    context.setdefault("kaudit_version", __version__)
    try:
        return environment().get_template(template).render(**context)
    except jinja2.TemplateNotFound as e:
        raise KauditError(f"template {e.name} not found in templates/", "reinstall kaudit: its templates are missing") from None
    except jinja2.TemplateSyntaxError as e:
        raise KauditError(f"template {e.name or template}:{e.lineno}: {e.message}") from None
    except jinja2.UndefinedError as e:
        line = "?"
        where = template
        for frame in traceback.extract_tb(e.__traceback__):
            if frame.filename.endswith(".j2"):
                where = frame.filename.rsplit("/", 1)[-1]
                line = str(frame.lineno)
        raise KauditError(f"template {where}:{line}: {e.message}") from None


def parse_yaml(text: str, what: str) -> Any:
    """Parse rendered YAML; a failure names the template and the line in the output."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        return YAML(typ="safe", pure=True).load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise KauditError(f"rendered {what}{at} is not valid YAML: {e.problem}", "a template or a value produced broken YAML; report it") from None


def parse_yaml_documents(text: str, what: str) -> list[Any]:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    try:
        return [d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None]
    except MarkedYAMLError as e:
        mark = e.problem_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise KauditError(f"rendered {what}{at} is not valid YAML: {e.problem}") from None


# -- collector configs -------------------------------------------------------------


#: where each collector keeps its read positions on the node: a hostPath under /var/lib, so
#: they survive a reboot (/run is tmpfs: positions there are lost and every line shipped again).
#: The shipper's stays at the top for compatibility with the positions earlier kaudits wrote.
STATE_DIRS = {"shipper": "/var/lib/kaudit", "promtail": "/var/lib/kaudit/promtail", "alloy": "/var/lib/kaudit/alloy"}


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


def render_scrape_config(p: Pipeline) -> str:
    return render_template("promtail-scrape-config.yaml.j2", p=p, node_env=NODE_ENV)


def render_collector_config(fmt: str, settings: CollectorSettings) -> str:
    """Render one collector format. Pure: the same settings always give the same text."""
    if fmt not in FORMATS:
        raise UsageError(f"--format: unknown format {fmt!r}", f"choose one of: {', '.join(FORMATS)}")
    p = build_pipeline(settings)
    if fmt == "alloy":
        return render_template("alloy-config.alloy.j2", p=p, node_env=NODE_ENV)
    scrape = render_scrape_config(p)
    if fmt == "scrape-config":
        out = scrape
    elif fmt == "promtail-config":
        out = render_template("promtail-config.yaml.j2", p=p, scrape_configs=_indent(scrape.rstrip("\n"), 2))
    else:
        body = render_template(
            "promtail-values.yaml.j2",
            p=p,
            log_dir=log_dir(p.path),
            positions_dir=STATE_DIRS["promtail"],
            extra_scrape_configs=_indent(tpl_escape(scrape).rstrip("\n"), 6),
        )
        out = _nest("promtail", body) if settings.nest_under_promtail else body
    parse_yaml(out, f"{fmt} ({'nested under promtail' if fmt == 'helm-values' and settings.nest_under_promtail else fmt})")
    return out


def _nest(key: str, body: str) -> str:
    """Put a values document under one top-level key, keeping its leading comments on top."""
    lines = body.splitlines(keepends=True)
    head = []
    while lines and (lines[0].startswith("#") or not lines[0].strip()):
        head.append(lines.pop(0))
    return "".join(head) + f"{key}:\n" + _indent("".join(lines), 2)


def log_dir(path: str) -> str:
    import posixpath

    return posixpath.dirname(path) or "/"


def alloy_chart_values(settings: CollectorSettings, *, storage_dir: str = STATE_DIRS["alloy"]) -> str:
    """Values for the grafana/alloy chart with the rendered config inside (passed through `tpl`)."""
    p = build_pipeline(settings)
    config = render_template("alloy-config.alloy.j2", p=p, node_env=NODE_ENV)
    out = render_template(
        "alloy-values.yaml.j2",
        auth=p.auth,
        log_dir=log_dir(p.path),
        storage_dir=storage_dir,
        alloy_config=_indent(tpl_escape(config).rstrip("\n"), 6),
    )
    parse_yaml(out, "alloy-values.yaml")
    return out


# -- stack values, dashboard, shipper manifest ---------------------------------------

#: the label the Grafana sidecar looks for on dashboard ConfigMaps
DASHBOARD_LABEL = "grafana_dashboard"
DASHBOARD_FILES: tuple[str, ...] = ("kubernetes-audit.json",)


#: the label kaudit puts on (and the Grafana sidecar selects) the Loki datasource ConfigMap
DATASOURCE_LABEL = ("kaudit.io/grafana-datasource", "loki")

_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?\Z")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")


@dataclass(frozen=True)
class LokiStorage:
    """A PersistentVolumeClaim for Loki's data. Without one (the default) Loki writes to an
    emptyDir: no provisioner is needed, and the data lives as long as the pod."""

    storage_class: Optional[str] = None  # None: the cluster's default StorageClass
    size: str = "10Gi"

    @classmethod
    def from_flags(cls, storage_class: Optional[str], size: Optional[str]) -> Optional["LokiStorage"]:
        """--loki-storage-class / --loki-size: either turns persistence on; neither leaves it off."""
        if not storage_class and not size:
            return None
        if storage_class and (len(storage_class) > 253 or not _DNS_SUBDOMAIN.match(storage_class)):
            raise UsageError(
                f"--loki-storage-class: {storage_class!r} is not a StorageClass name",
                "list the cluster's classes with `kubectl get storageclass`",
            )
        size = size or cls.size
        if not _QUANTITY.match(size) or float(re.match(r"[0-9.]+", size).group()) <= 0:
            raise UsageError(f"--loki-size: {size!r} is not a size such as 10Gi or 500Mi")
        return cls(storage_class or None, size)


def stack_values(stack: str, namespace: str, storage: Optional[LokiStorage] = None, scalable: Any = None) -> dict[str, str]:
    """Rendered values for each release of a stack: release name -> YAML text. `scalable` (a
    kaudit.core.loki_scalable.ScalableLoki) replaces the monolithic Loki of --stack loki."""
    from kaudit import charts

    if stack not in charts.STACKS:
        raise UsageError(f"--stack: unknown stack {stack!r}", f"choose one of: {', '.join(charts.STACKS)}")
    out: dict[str, str] = {}
    common = {
        "dashboard_label": DASHBOARD_LABEL,
        "datasource_label": DATASOURCE_LABEL,
        "loki_port": charts.LOKI_PORT,
        "loki_url": charts.loki_gateway_url(namespace) if scalable else charts.loki_base_url(namespace),
        "persistence": storage,
    }
    names = {"loki-stack": "loki-stack-values.yaml.j2", "loki": "loki-values.yaml.j2", "grafana": "grafana-values.yaml.j2"}
    for chart in charts.STACKS[stack]:
        tmpl = names[chart.chart]
        if scalable is not None and chart.chart == "loki":
            from kaudit.core import loki_scalable

            out[chart.release] = loki_scalable.render(scalable, chart, namespace)
            continue
        text = render_template(tmpl, chart=chart, **common)
        parse_yaml(text, tmpl)
        out[chart.release] = text
    return out


def dashboards() -> dict[str, str]:
    """The dashboard JSON files shipped in templates/dashboards/, checked to be JSON."""
    from kaudit.resources import read_resource

    out = {}
    for name in DASHBOARD_FILES:
        text = read_resource("templates", f"dashboards/{name}")
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise KauditError(f"templates/dashboards/{name}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
        out[name] = text
    return out


def render_dashboard_configmap(namespace: str) -> str:
    from kaudit import charts

    text = render_template(
        "dashboard-configmap.yaml.j2",
        name=charts.DASHBOARD_CONFIGMAP,
        namespace=namespace,
        dashboard_label=DASHBOARD_LABEL,
        managed_by=charts.MANAGED_BY_LABEL,
        dashboards=dashboards(),
    )
    parse_yaml(text, "dashboard-configmap.yaml")
    return text


@dataclass(frozen=True)
class ShipperDeploy:
    """How the shipper DaemonSet runs; `sources` maps a path under code_dir to file text."""

    sources: tuple[tuple[str, str], ...]
    namespace: str = "kaudit"
    image: str = "python:3.12-slim"
    log_path: str = DEFAULT_LOG_PATH
    loki_url: str = DEFAULT_LOKI_URL
    structured_metadata: bool = False
    job: str = F.DEFAULT_JOB
    labels: tuple[tuple[str, str], ...] = ()
    tenant: Optional[str] = None
    cluster: Optional[str] = None
    #: kaudit.core.loki_auth.PodAuth: credential files from the mounted Secret
    auth: Any = None
    positions_dir: str = STATE_DIRS["shipper"]
    code_dir: str = "/opt/kaudit"
    metrics_port: int = 9101
    #: Loki's max_line_size when kaudit sized it (a scalable Loki); None: the shipper's default
    max_line_bytes: Optional[int] = None
    #: follow the audit log (kaudit up --mode log|both)
    tail_log: bool = True
    #: also receive the audit webhook here, on the node's network (--mode webhook|both)
    webhook_listen: Optional[str] = None
    webhook_tls_dir: str = "/etc/kubernetes/kaudit-webhook"

    def webhook_args(self) -> list[str]:
        """The receiver's command line: TLS files and spool on the node (docs/shipper.md, "Webhook mode")."""
        tls = self.webhook_tls_dir.rstrip("/")
        a = [
            "--listen", str(self.webhook_listen),
            "--tls-cert-file", f"{tls}/tls.crt",
            "--tls-key-file", f"{tls}/tls.key",
            "--client-ca-file", f"{tls}/ca.crt",
            "--spool-dir", f"{self.positions_dir.rstrip('/')}/spool",
            "--loki-url", self.loki_url,
            "--structured-metadata", "on" if self.structured_metadata else "off",
            "--label", f"{F.JOB_LABEL}={self.job}",
            "--node", "$(NODE_NAME)",
        ]
        return a + self._common_args()

    def _common_args(self) -> list[str]:
        """What the tailer and the webhook receiver both pass on to Loki: labels, tenant, limits, auth."""
        a = ["--cluster", self.cluster] if self.cluster else []
        for k, v in self.labels:
            a += ["--label", f"{k}={v}"]
        if self.tenant:
            a += ["--tenant", self.tenant]
        if self.max_line_bytes:
            a += ["--max-line-bytes", str(self.max_line_bytes)]
        if self.auth is not None:  # file paths only: the values stay in the Secret
            if self.auth.username:
                a += ["--basic-auth-user", self.auth.username, "--basic-auth-password-file", self.auth.password_file]
            if self.auth.bearer_token_file:
                a += ["--bearer-token-file", self.auth.bearer_token_file]
            if self.auth.ca_file:
                a += ["--ca-file", self.auth.ca_file]
        return a

    def args(self) -> list[str]:
        """The shipper's command line (docs/shipper.md); $(NODE_NAME) is expanded by the kubelet."""
        a = [
            "--path", self.log_path,
            "--loki-url", self.loki_url,
            "--positions", f"{self.positions_dir.rstrip('/')}/positions.json",
            "--structured-metadata", "on" if self.structured_metadata else "off",
            "--metrics-addr", f"0.0.0.0:{self.metrics_port}",
            "--label", f"{F.JOB_LABEL}={self.job}",
            "--node", "$(NODE_NAME)",
        ]
        return a + self._common_args()


_CM_KEY = re.compile(r"[-._a-zA-Z0-9]+\Z")


def _configmap_key(path: str) -> str:
    """The shipper package's own naming of ConfigMap keys (keys cannot hold '/')."""
    import kaudit.shipper as pkg

    fn = getattr(pkg, "configmap_key", None)
    return fn(path) if callable(fn) else path.replace("/", "__")
CONFIGMAP_LIMIT = 1024 * 1024


def render_shipper_manifest(d: ShipperDeploy) -> str:
    """ConfigMap with the shipper's code + the DaemonSet, as one YAML stream."""
    import hashlib

    from kaudit import charts

    code: dict[str, tuple[str, str]] = {}
    digest = hashlib.sha256()
    total = 0
    for path, text in sorted(d.sources):
        key = _configmap_key(path)
        if not _CM_KEY.match(key) or key.startswith(".."):
            raise KauditError(f"shipper file {path!r} cannot be a ConfigMap key", "rename the file: letters, digits, '-', '_' and '.' only")
        code[key] = (path, text)
        digest.update(path.encode() + b"\0" + text.encode() + b"\0")
        total += len(text.encode())
    if total > CONFIGMAP_LIMIT:
        raise KauditError(f"the shipper's code is {total} bytes, over the 1 MiB ConfigMap limit")
    text = render_template(
        "shipper-daemonset.yaml.j2",
        name=charts.SHIPPER_NAME,
        code_configmap=charts.SHIPPER_CODE_CONFIGMAP,
        namespace=d.namespace,
        managed_by=charts.MANAGED_BY_LABEL,
        code=code,
        code_sha256=digest.hexdigest(),
        image=d.image,
        args=d.args() if d.tail_log else None,
        webhook_args=d.webhook_args() if d.webhook_listen else None,
        webhook_port=int(str(d.webhook_listen).rpartition(":")[2]) if d.webhook_listen else None,
        webhook_tls_dir=d.webhook_tls_dir,
        code_dir=d.code_dir,
        log_dir=log_dir(d.log_path),
        positions_dir=d.positions_dir,
        metrics_port=d.metrics_port,
        auth=d.auth,
    )
    parse_yaml_documents(text, "shipper-daemonset.yaml")
    return text
