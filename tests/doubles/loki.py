"""A Loki test double: the HTTP API surface kaudit talks to, with Loki's documented behaviour.

Loki cannot run on this machine, so this double stands in for it (FACTS.md §5, §7):

* ``POST /loki/api/v1/push`` takes JSON (``Content-Type: application/json``) or snappy protobuf
  (``application/x-protobuf``, logproto.PushRequest), plain,
  gzip or deflate encoded; answers 204 on success. Validation failures answer 400 with
  Loki's own messages (line too long, timestamp too old / too new, a third entry element
  on a 2.x version, structured metadata when disallowed); the valid entries of the same
  request are still stored, as Loki's distributor does. Exact duplicates (same stream,
  timestamp and line) are stored once. 429 / 500 can be injected.
* ``GET /ready``, ``GET /loki/api/v1/status/buildinfo``.
* ``GET /loki/api/v1/query_range`` with a LogQL subset: a stream selector
  (``=``, ``!=``, ``=~``, ``!~``), line filters (``|=``, ``!=``, ``|~``, ``!~``), ``| json``
  (nested keys flattened with ``_``, arrays skipped, as Loki does) and label filters
  after it; ``direction``, ``limit``, ``start``, ``end``. On 3.x structured metadata is
  merged into the stream labels (or categorised when the request carries
  ``X-Loki-Response-Encoding-Flags: categorize-labels``), and ``service_name`` is added
  from ``job``.
* ``GET /loki/api/v1/labels``, ``/loki/api/v1/label/<name>/values``, ``/loki/api/v1/series``.

With ``basic_auth=(user, password)`` or ``bearer_token=TOKEN`` every request must carry that
``Authorization`` header or is answered 401, as the nginx gateway in front of a shared Loki
(the loki chart's gateway with basicAuth, or an ingress) does; ``tls=(cert, key)`` serves https.

Test control: ``fail_next(status, times)`` in-process, or ``POST /_double/fail`` with
``{"status": 429, "times": 5}``; ``GET /_double/entries`` returns everything stored.

Use it in-process (``LokiDouble().start()``) or as a program::

    python tests/doubles/loki.py --port 3100 --version 2.6.1
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NS = 1_000_000_000
DEFAULT_MAX_QUERY_LENGTH_NS = (30 * 24 + 1) * 3600 * NS  # 30d1h
DAY_NS = 24 * 3600 * NS

RATE_LIMIT_MSG = (
    "Ingestion rate limit exceeded for user fake (limit: 4194304 bytes/sec) while attempting to ingest "
    "'{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see "
    "if the limit can be increased"
)
INTERNAL_MSG = "rpc error: code = Unavailable desc = at least 1 live replicas required, could only find 0"


@dataclass(frozen=True)
class Entry:
    """One stored log entry."""

    labels: tuple[tuple[str, str], ...]  # sorted stream labels as pushed
    ts: int  # nanoseconds
    line: str
    metadata: tuple[tuple[str, str], ...] = ()  # structured metadata (3.x only)
    tenant: str = "fake"
    received_ns: int = field(default=0, compare=False)  # wall clock when first stored (lag measurements)

    @property
    def stream(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def structured_metadata(self) -> dict[str, str]:
        return dict(self.metadata)


class Headers(dict):
    """HTTP headers with case-insensitive lookup (clients differ: X-Scope-OrgID vs X-scope-orgid)."""

    def __init__(self, items=()):
        super().__init__((k.lower(), v) for k, v in items)

    def __getitem__(self, key):
        return super().__getitem__(key.lower())

    def get(self, key, default=None):
        return super().get(key.lower(), default)

    def __contains__(self, key):
        return super().__contains__(str(key).lower())


@dataclass
class Request:
    """What the double saw of one HTTP request (for assertions on headers, auth, encodings)."""

    method: str
    path: str
    headers: Headers
    status: int
    body_bytes: int = 0
    entries: int = 0


def format_labels(labels) -> str:
    """Loki's label-set string: {a="1", b="2"} (sorted, Go-quoted values)."""
    items = sorted(dict(labels).items())
    return "{" + ", ".join(f"{k}={json.dumps(v)}" for k, v in items) + "}"


def _go_time(ns: int) -> str:
    """A timestamp as Go's time.Time prints it in Loki's messages (RFC3339 in UTC)."""
    return datetime.fromtimestamp(ns / NS, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class PushError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------- LogQL subset

_SELECTOR_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|`[^`]*`)\s*(,|\})')
_STRING = r'("(?:[^"\\]|\\.)*"|`[^`]*`)'
_LINE_FILTER = re.compile(r"\s*(\|=|!=|\|~|!~)\s*" + _STRING)
_JSON_STAGE = re.compile(r"\s*\|\s*json\b\s*")
_LABEL_FILTER = re.compile(r"\s*\|\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|==|=|>=|<=|>|<)\s*" + r'("(?:[^"\\]|\\.)*"|`[^`]*`|-?\d+(?:\.\d+)?)')


class LogQLError(ValueError):
    pass


def _unquote(tok: str) -> str:
    if tok.startswith("`"):
        return tok[1:-1]
    return json.loads(tok)


@dataclass
class Query:
    """A parsed LogQL log query: selector, then pipeline stages in order.

    This parser answers malformed queries with Loki's own error texts; evaluation is
    tests/doubles/logql.py's, the one LogQL evaluator of the tests."""

    matchers: list[tuple[str, str, str]]
    stages: list[tuple] = field(default_factory=list)  # ("line", op, s) | ("json",) | ("label", name, op, v)
    compiled: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def parse(cls, text: str) -> "Query":
        s = text.strip()
        if not s.startswith("{"):
            raise LogQLError(f'parse error at line 1, col 1: syntax error: unexpected {s[:1] or "EOF"}, expecting {{')
        pos = 1
        matchers: list[tuple[str, str, str]] = []
        if s[pos:].lstrip().startswith("}"):
            pos = s.index("}", pos) + 1
        else:
            while True:
                m = _SELECTOR_MATCHER.match(s, pos)
                if not m:
                    raise LogQLError(f"parse error at line 1, col {pos + 1}: syntax error in stream selector")
                matchers.append((m.group(1), m.group(2), _unquote(m.group(3))))
                pos = m.end()
                if m.group(4) == "}":
                    break
        if not any(op in ("=", "=~") and not _logql()._cmp(op, "", v) for _, op, v in matchers):
            raise LogQLError("parse error : queries require at least one regexp or equality matcher that does not have an empty-compatible value. For instance, app=~\".*\" does not meet this requirement, but app=~\".+\" will")
        q = cls(matchers)
        while pos < len(s):
            if not s[pos:].strip():
                break
            for rx, kind in ((_LINE_FILTER, "line"), (_JSON_STAGE, "json"), (_LABEL_FILTER, "label")):
                m = rx.match(s, pos)
                if m:
                    if kind == "line":
                        q.stages.append(("line", m.group(1), _unquote(m.group(2))))
                    elif kind == "json":
                        q.stages.append(("json",))
                    else:
                        v = m.group(3)
                        q.stages.append(("label", m.group(1), m.group(2), _unquote(v) if v[0] in "\"`" else v))
                    pos = m.end()
                    break
            else:
                raise LogQLError(f"parse error at line 1, col {pos + 1}: syntax error: unexpected {s[pos:pos + 10]!r}")
        q.compiled = _logql().LogQuery.of(text)
        return q

    def selects(self, labels: dict[str, str]) -> bool:
        return self.compiled.selects(labels)

    def run(self, labels: dict[str, str], line: str) -> dict[str, str] | None:
        """The result labels for a line that passes every stage, or None."""
        return self.compiled.run(labels, line)


def _parse_time(value: str | None, default: int) -> int:
    if value is None or value == "":
        return default
    if re.fullmatch(r"-?\d+", value):
        n = int(value)
        return n if len(value.lstrip("-")) > 12 else n * NS  # seconds when short
    if re.fullmatch(r"-?\d+\.\d+", value):
        return int(float(value) * NS)
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def _logql():
    """tests/doubles/logql.py, whether this file runs as a module or as a program."""
    try:
        from doubles import logql
    except ImportError:
        import importlib.util
        import pathlib

        spec = importlib.util.spec_from_file_location("kaudit_test_logql", pathlib.Path(__file__).with_name("logql.py"))
        logql = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(logql)
    return logql


# --------------------------------------------------------------------------- the double


class LokiDouble:
    """An in-process Loki on 127.0.0.1.

    version: "2.6.1" behaves as loki-stack's Loki (no structured metadata, no line limit);
    "3.x" versions accept structured metadata and enforce max_line_size (256 KiB default).
    """

    def __init__(
        self,
        version: str = "3.5.0",
        *,
        port: int = 0,
        max_line_size: int | None = None,
        reject_old_samples_max_age_ns: int = 7 * DAY_NS,
        creation_grace_period_ns: int = 600 * NS,
        allow_structured_metadata: bool | None = None,
        auth_enabled: bool = False,
        store_lines: bool = True,
        tls: tuple[str, str] | None = None,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
    ):
        self.version = version
        self.major = int(re.match(r"v?(\d+)", version).group(1))
        self.port = port
        self.max_line_size = (256 * 1024 if self.major >= 3 else 0) if max_line_size is None else max_line_size
        self.max_age_ns = reject_old_samples_max_age_ns
        self.grace_ns = creation_grace_period_ns
        self.allow_sm = (self.major >= 3) if allow_structured_metadata is None else allow_structured_metadata
        self.auth_enabled = auth_enabled
        self.store_lines = store_lines
        self.tls = tls  # (certfile, keyfile): serve https
        self.basic_auth = basic_auth
        self.bearer_token = bearer_token
        self._lock = threading.Lock()
        self._streams: dict[tuple, dict[tuple[int, str], Entry]] = {}
        self._received = 0
        self.proto_pushes = 0  # protobuf pushes accepted (JSON is the rest)
        self._faults: list[tuple[int, str | None]] = []
        self._requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> "LokiDouble":
        handler = type("Handler", (_Handler,), {"double": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        if self.tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (stored entries are kept; start() again serves the same port and data)."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "LokiDouble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def push_url(self) -> str:
        return self.url + "/loki/api/v1/push"

    # -- control
    def fail_next(self, status: int, times: int = 1, body: str | None = None) -> None:
        """Answer the next `times` pushes with `status` (429, 500, 503...) and nothing stored."""
        with self._lock:
            self._faults.extend([(status, body)] * times)

    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # -- inspection
    def entries(self) -> list[Entry]:
        """Every stored entry, ordered by stream then timestamp."""
        with self._lock:
            out = [e for s in self._streams.values() for e in s.values()]
        return sorted(out, key=lambda e: (e.labels, e.ts, e.line))

    def streams(self) -> dict[tuple, list[Entry]]:
        """Stored entries per stream; the key is the sorted (label, value) tuple."""
        with self._lock:
            return {k[1]: sorted(v.values(), key=lambda e: e.ts) for k, v in self._streams.items()}

    @property
    def received(self) -> int:
        """Entries received in accepted pushes, duplicates included."""
        return self._received

    def requests(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def _record(self, req: Request) -> None:
        with self._lock:
            self._requests.append(req)
            del self._requests[:-10000]

    # -- push
    def push(self, body: bytes, *, content_type: str, encoding: str, tenant: str) -> None:
        """Validate and store one push body; raises PushError with Loki's status and message."""
        with self._lock:
            if self._faults:
                status, msg = self._faults.pop(0)
                if msg is None:
                    msg = RATE_LIMIT_MSG.format(lines=0, bytes=len(body)) if status == 429 else INTERNAL_MSG
                raise PushError(status, msg)
        enc = encoding.strip().lower()
        try:
            if enc == "gzip":
                body = gzip.decompress(body)
            elif enc == "deflate":
                body = zlib.decompress(body)
            elif enc not in ("", "identity"):
                raise PushError(415, f"Content-Encoding {encoding!r} not supported")
        except (OSError, zlib.error, EOFError) as e:
            raise PushError(400, f"loghttp/push: failed to decompress body: {e}")
        ctype = content_type.split(";")[0].strip().lower()
        if ctype == "application/x-protobuf":
            # Loki's default for any other type: snappy block format around a logproto.PushRequest
            try:
                req = _proto_push_request(snappy_decode(body), self.major)
            except (ValueError, IndexError) as e:
                raise PushError(400, f"loghttp/push: failed to parse push request: {e}")
            self.proto_pushes += 1
        elif ctype != "application/json":
            raise PushError(415, f"unsupported Content-Type {content_type!r}")
        else:
            try:
                req = json.loads(body)
            except ValueError as e:
                raise PushError(400, f"loghttp/push: failed to parse push request: {e}")
        streams = req.get("streams") if isinstance(req, dict) else None
        if not isinstance(streams, list):
            raise PushError(400, "loghttp/push: failed to parse push request: missing streams")
        # decode everything first: a malformed entry fails the whole request, as in Loki's decoder
        decoded = []
        for i, st in enumerate(streams):
            labels = st.get("stream") if isinstance(st, dict) else None
            values = st.get("values") if isinstance(st, dict) else None
            if not isinstance(labels, dict) or not isinstance(values, list):
                raise PushError(400, f"loghttp/push: stream {i}: needs 'stream' and 'values'")
            if not labels:
                raise PushError(400, "error at least one label pair is required per stream")
            entries = []
            for v in values:
                if not isinstance(v, list) or len(v) < 2:
                    raise PushError(400, "loghttp.PushRequest.Streams: []*loghttp.Stream: Values: unmarshalerDecoder: array must contains 2 values")
                if len(v) > 2 and self.major < 3:
                    # Loki 2.x's entry decoder knows exactly two elements (FACTS.md §5)
                    raise PushError(400, "loghttp.PushRequest.Streams: []*loghttp.Stream: Values: unmarshalerDecoder: array must contains 2 values, error found in #10 byte of ...|")
                if len(v) > 3 or not isinstance(v[0], str) or not isinstance(v[1], str):
                    raise PushError(400, "loghttp.PushRequest.Streams: []*loghttp.Stream: Values: unmarshalerDecoder: invalid entry")
                try:
                    ts = int(v[0])
                except ValueError:
                    raise PushError(400, f"loghttp/push: invalid timestamp {v[0]!r}")
                md = v[2] if len(v) == 3 else {}
                if not isinstance(md, dict) or not all(isinstance(x, str) for x in md.values()):
                    raise PushError(400, "loghttp/push: structured metadata must be an object of strings")
                entries.append((ts, v[1], md))
            decoded.append(({str(k): str(x) for k, x in labels.items()}, entries))
        now = time.time_ns()  # also the entries' received_ns
        errors: list[str] = []
        with self._lock:
            for labels, entries in decoded:
                lbl = tuple(sorted(labels.items()))
                lstr = format_labels(labels)
                if any(md for _, _, md in entries) and not self.allow_sm:
                    errors.append(
                        f"stream '{lstr}' includes structured metadata, but this feature is disallowed. Please see "
                        "`limits_config.structured_metadata` or contact your Loki administrator to enable it."
                    )
                    continue
                bucket = self._streams.setdefault((tenant, lbl), {})
                for ts, line, md in entries:
                    if self.max_line_size and len(line.encode()) > self.max_line_size:
                        errors.append(
                            f"max entry size '{self.max_line_size}' bytes exceeded for stream '{lstr}' while "
                            f"adding an entry with length '{len(line.encode())}' bytes"
                        )
                        continue
                    if self.max_age_ns and ts < now - self.max_age_ns:
                        errors.append(
                            f"entry for stream '{lstr}' has timestamp too old: {_go_time(ts)}, "
                            f"oldest acceptable timestamp is: {_go_time(now - self.max_age_ns)}"
                        )
                        continue
                    if ts > now + self.grace_ns:
                        errors.append(f"entry for stream '{lstr}' has timestamp too new: {_go_time(ts)}")
                        continue
                    self._received += 1
                    key = (ts, line if self.store_lines else hash(line))
                    if key not in bucket:  # exact duplicates are stored once
                        bucket[key] = Entry(lbl, ts, line if self.store_lines else "", tuple(sorted(md.items())), tenant, now)
        if errors:
            raise PushError(400, "\n".join(errors))

    # -- query
    def query_range(self, params: dict[str, str], categorize: bool = False) -> dict:
        text = params.get("query", "")
        if text.lstrip().startswith("sum"):
            return self._metric_range(params)
        try:
            q = Query.parse(text)
        except LogQLError as e:
            if "queries require" in str(e):
                raise
            # json parameters and label filter expressions: the fuller evaluator beside this file
            try:
                q = _logql().LogQuery.of(text)
            except _logql().LogQLError:
                raise e from None
        now = time.time_ns()
        end = _parse_time(params.get("end"), now)
        start = _parse_time(params.get("start"), end - 3600 * NS)
        if end - start > DEFAULT_MAX_QUERY_LENGTH_NS:
            raise PushError(400, f"the query time range exceeds the limit (query length: {(end - start) // NS}s, limit: 30d1h)")
        limit = int(params.get("limit") or 100)
        direction = (params.get("direction") or "backward").lower()
        if direction not in ("forward", "backward"):
            raise PushError(400, f"invalid direction {direction!r}")
        hits = []
        for e in self.entries():
            if not (start <= e.ts < end):
                continue
            stream = self._visible_labels(e)
            if not q.selects(stream):
                continue
            merged = dict(stream)
            if not categorize:
                merged.update(e.metadata)
            out = q.run(merged, e.line)
            if out is not None:
                hits.append((e.ts, e.line, out, e))
        hits.sort(key=lambda h: h[0], reverse=(direction == "backward"))
        hits = hits[:limit]
        result: dict[tuple, dict] = {}
        for ts, line, labels, e in hits:
            key = tuple(sorted(labels.items()))
            r = result.setdefault(key, {"stream": dict(key), "values": []})
            v = [str(ts), line]
            if categorize:
                v.append({"structuredMetadata": dict(e.metadata)} if e.metadata else {})
            r["values"].append(v)
        data = {"resultType": "streams", "result": list(result.values()), "stats": {"summary": {"totalEntriesReturned": len(hits)}}}
        if categorize:
            data["encodingFlags"] = ["categorize-labels"]
        return {"status": "success", "data": data}

    def _metric_range(self, params: dict[str, str]) -> dict:
        """sum by (...) (count_over_time(...)) as a matrix (tests/doubles/logql.py)."""
        m = _logql()
        try:
            q = m.MetricQuery.of(params.get("query", ""))
        except m.LogQLError as e:
            raise PushError(400, f"parse error : {e}") from None
        now = time.time_ns()
        end = _parse_time(params.get("end"), now)
        start = _parse_time(params.get("start"), end - 3600 * NS)
        step = params.get("step") or "60"
        step_ns = int(float(step.rstrip("s")) * NS)
        entries = [(e.ts, {**self._visible_labels(e), **e.structured_metadata}, e.line) for e in self.entries()]
        return {"status": "success", "data": {"resultType": "matrix", "result": q.matrix(entries, start, end, step_ns)}}

    def _visible_labels(self, e: Entry) -> dict[str, str]:
        labels = dict(e.labels)
        if self.major >= 3 and "service_name" not in labels:
            labels["service_name"] = labels.get("service_name") or labels.get("job") or "unknown_service"
        return labels

    def label_names(self) -> list[str]:
        names = set()
        for e in self.entries():
            names.update(self._visible_labels(e))
        return sorted(names)

    def label_values(self, name: str) -> list[str]:
        return sorted({self._visible_labels(e)[name] for e in self.entries() if name in self._visible_labels(e)})

    def series(self, matches: list[str]) -> list[dict[str, str]]:
        queries = [Query.parse(m) for m in matches] or [None]
        seen = {}
        for e in self.entries():
            lbl = self._visible_labels(e)
            if any(q is None or q.selects(lbl) for q in queries):
                seen[tuple(sorted(lbl.items()))] = lbl
        return list(seen.values())


class _Handler(BaseHTTPRequestHandler):
    double: LokiDouble
    protocol_version = "HTTP/1.1"
    server_version = "Loki-double"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _send(self, status: int, body: bytes | str | dict | list = b"", ctype: str = "text/plain; charset=utf-8") -> None:
        if isinstance(body, (dict, list)):
            body, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            body = (body + ("\n" if body and not body.endswith("\n") else "")).encode()
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status != 204 and body:
            self.wfile.write(body)
        self.double._record(Request(self.command, urlsplit(self.path).path, Headers(self.headers.items()), status, self._body_len))

    _body_len = 0

    def _tenant(self) -> str | None:
        t = self.headers.get("X-Scope-OrgID")
        if self.double.auth_enabled:
            if not t:
                self._send(401, "no org id")
                return None
            return t
        return "fake"  # single-tenant Loki ignores the header and uses "fake"

    def _authorized(self) -> bool:
        """The gateway's check: a missing or wrong Authorization header is a 401 before Loki sees anything."""
        import base64

        d = self.double
        if not (d.basic_auth or d.bearer_token):
            return True
        given = self.headers.get("Authorization", "")
        ok = False
        if d.basic_auth and given.startswith("Basic "):
            try:
                ok = base64.b64decode(given[6:]).decode() == f"{d.basic_auth[0]}:{d.basic_auth[1]}"
            except ValueError:
                ok = False
        if d.bearer_token and given == f"Bearer {d.bearer_token}":
            ok = True
        if not ok:
            self.send_response(401)
            body = b"<html><head><title>401 Authorization Required</title></head></html>\n"
            if d.basic_auth:
                self.send_header("WWW-Authenticate", 'Basic realm="Loki"')
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.double._record(Request(self.command, urlsplit(self.path).path, Headers(self.headers.items()), 401, 0))
        return ok

    def do_POST(self):
        if not self._authorized():
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            return
        u = urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self._body_len = len(body)
        if u.path in ("/loki/api/v1/push", "/api/prom/push"):
            tenant = self._tenant()
            if tenant is None:
                return
            try:
                self.double.push(
                    body,
                    content_type=self.headers.get("Content-Type", ""),
                    encoding=self.headers.get("Content-Encoding", ""),
                    tenant=tenant,
                )
            except PushError as e:
                return self._send(e.status, e.message)
            return self._send(204)
        if u.path == "/_double/fail":
            req = json.loads(body or b"{}")
            self.double.fail_next(int(req.get("status", 500)), int(req.get("times", 1)), req.get("body"))
            return self._send(200, {"pending": self.double.pending_faults()})
        self._send(404, "404 page not found")

    def do_GET(self):
        if not self._authorized():
            return
        u = urlsplit(self.path)
        qs = parse_qs(u.query)
        params = {k: v[-1] for k, v in qs.items()}
        d = self.double
        try:
            if u.path == "/ready":
                return self._send(200, "ready")
            if u.path in ("/loki/api/v1/status/buildinfo",):
                return self._send(200, {"version": d.version, "revision": "double", "branch": "HEAD", "buildUser": "kaudit-tests", "buildDate": "", "goVersion": ""})
            if u.path == "/loki/api/v1/query_range":
                if self._tenant() is None:
                    return
                cat = "categorize-labels" in self.headers.get("X-Loki-Response-Encoding-Flags", "") and d.major >= 3
                return self._send(200, d.query_range(params, categorize=cat))
            if u.path == "/loki/api/v1/labels":
                return self._send(200, {"status": "success", "data": d.label_names()})
            m = re.fullmatch(r"/loki/api/v1/label/([^/]+)/values", u.path)
            if m:
                return self._send(200, {"status": "success", "data": d.label_values(m.group(1))})
            if u.path == "/loki/api/v1/series":
                return self._send(200, {"status": "success", "data": d.series(qs.get("match[]", []) + qs.get("match", []))})
            if u.path == "/_double/entries":
                return self._send(200, [{"stream": e.stream, "ts": str(e.ts), "line": e.line, "metadata": e.structured_metadata} for e in d.entries()])
        except LogQLError as e:
            return self._send(400, str(e))
        except PushError as e:
            return self._send(e.status, e.message)
        except (ValueError, re.error) as e:
            return self._send(400, f"invalid request: {e}")
        self._send(404, "404 page not found")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Loki test double (push, query_range, labels, buildinfo)")
    ap.add_argument("--port", type=int, default=3100)
    ap.add_argument("--version", default="3.5.0", help="Loki version to behave as: 2.6.1 or 3.x")
    ap.add_argument("--max-line-size", type=int, default=None, help="bytes; default 256KiB on 3.x, unlimited on 2.x")
    ap.add_argument("--no-store", action="store_true", help="validate and count, do not keep lines (benchmarks)")
    a = ap.parse_args(argv)
    d = LokiDouble(a.version, port=a.port, max_line_size=a.max_line_size, store_lines=not a.no_store).start()
    print(f"loki double {a.version} listening on {d.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        d.stop()
    return 0

# ----------------------------------------------------------------------------- protobuf pushes


def snappy_decode(data: bytes) -> bytes:
    """snappy block format (github.com/golang/snappy Decode): literals and back-references."""
    n, pos = _read_varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        kind = tag & 3
        if kind == 0:  # literal
            x = tag >> 2
            pos += 1
            if x >= 60:
                k = x - 59
                x = int.from_bytes(data[pos:pos + k], "little")
                pos += k
            length = x + 1
            if pos + length > len(data):
                raise ValueError("snappy: corrupt input (literal past the end)")
            out += data[pos:pos + length]
            pos += length
            continue
        if kind == 1:
            length = 4 + ((tag >> 2) & 7)
            offset = ((tag & 0xE0) << 3) | data[pos + 1]
            pos += 2
        elif kind == 2:
            length = 1 + (tag >> 2)
            offset = int.from_bytes(data[pos + 1:pos + 3], "little")
            pos += 3
        else:
            length = 1 + (tag >> 2)
            offset = int.from_bytes(data[pos + 1:pos + 5], "little")
            pos += 5
        if offset <= 0 or offset > len(out):
            raise ValueError("snappy: corrupt input (bad offset)")
        start = len(out) - offset
        if offset >= length:
            out += out[start:start + length]
        else:  # overlapping: the last `offset` bytes repeat
            pattern = bytes(out[start:])
            out += (pattern * (length // offset + 1))[:length]
    if len(out) != n:
        raise ValueError(f"snappy: decoded {len(out)} bytes, header says {n}")
    return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise ValueError("protobuf: truncated varint")
        b = data[pos]
        pos += 1
        value |= (b & 127) << shift
        if b < 128:
            return value, pos
        shift += 7


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message; value is int or bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, pos = _read_varint(data, pos)
        elif wt == 2:
            ln, pos = _read_varint(data, pos)
            if pos + ln > len(data):
                raise ValueError("protobuf: length past the end of the message")
            v, pos = data[pos:pos + ln], pos + ln
        elif wt == 1:
            v, pos = data[pos:pos + 8], pos + 8
        elif wt == 5:
            v, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"protobuf: unsupported wire type {wt}")
        yield num, wt, v


_LABEL_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*("(?:[^"\\]|\\.)*")\s*(,|$)')


def _parse_label_string(text: str) -> dict[str, str]:
    """Loki's stream selector text {a="x", b="y"} -> dict."""
    t = text.strip()
    if not (t.startswith("{") and t.endswith("}")):
        raise ValueError(f"labels {text!r}: not a {{...}} selector")
    inner, out, pos = t[1:-1], {}, 0
    while pos < len(inner):
        m = _LABEL_PAIR.match(inner, pos)
        if not m:
            raise ValueError(f"labels {text!r}: parse error at {pos}")
        out[m.group(1)] = json.loads(m.group(2))
        pos = m.end()
    return out


def _proto_push_request(data: bytes, major: int) -> dict:
    """logproto.PushRequest -> the JSON push shape the rest of the double reads.
    Loki 2.x's EntryAdapter has no field 3: structured metadata is skipped, as its decoder does."""
    streams = []
    for num, wt, sv in _fields(data):
        if num != 1 or wt != 2:
            continue
        labels, values = None, []
        for n2, w2, v2 in _fields(sv):
            if n2 == 1 and w2 == 2:
                labels = _parse_label_string(v2.decode("utf-8"))
            elif n2 == 2 and w2 == 2:
                secs = nanos = 0
                line, md = b"", {}
                for n3, w3, v3 in _fields(v2):
                    if n3 == 1 and w3 == 2:
                        for n4, w4, v4 in _fields(v3):
                            if n4 == 1 and w4 == 0:
                                secs = v4
                            elif n4 == 2 and w4 == 0:
                                nanos = v4
                    elif n3 == 2 and w3 == 2:
                        line = v3
                    elif n3 == 3 and w3 == 2 and major >= 3:
                        pair = {n5: v5.decode("utf-8") for n5, w5, v5 in _fields(v3) if w5 == 2}
                        md[pair.get(1, "")] = pair.get(2, "")
                v = [str(secs * NS + nanos), line.decode("utf-8")]
                if md:
                    v.append(md)
                values.append(v)
        if labels is None:
            raise ValueError("stream without labels")
        streams.append({"stream": labels, "values": values})
    return {"streams": streams}


if __name__ == "__main__":
    raise SystemExit(main())
