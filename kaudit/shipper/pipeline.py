"""The shipping loop: follow -> encode -> batch -> push (retried) -> save positions.

Single-threaded on purpose: while a push is retried nothing more is read, the file
on disk is the buffer, and positions only ever move past entries Loki acknowledged.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import dataclass, field

from kaudit.shipper.client import BUILDINFO_PATH, LokiClient, Reply, backoff_delays, loki_major
from kaudit.shipper.metrics import Metrics
from kaudit.shipper.payload import Encoder, Entry, render_push
from kaudit.shipper.positions import Position, Positions
from kaudit.shipper.proto import CONTENT_TYPE as PROTO_TYPE, ProtoRenderer
from kaudit.shipper.tail import Follower

#: Loki's 400 messages (pkg/validation/validate.go, pkg/loghttp/entry.go) -> reason label
_REASONS = (
    (re.compile(r"max entry size '\d+' bytes exceeded"), "line_too_long"),
    (re.compile(r"has timestamp too old"), "greater_than_max_sample_age"),
    (re.compile(r"has timestamp too new"), "too_far_in_future"),
    (re.compile(r"too far behind"), "too_far_behind"),
    (re.compile(r"out of order"), "out_of_order"),
    (re.compile(r"includes structured metadata, but this feature is disallowed"), "disallowed_structured_metadata"),
    (re.compile(r"array must contains 2 values"), "structured_metadata_unsupported"),
    (re.compile(r"(?i)structured metadata.*(too large|too many)"), "structured_metadata_too_large"),
    (re.compile(r"(?i)maximum active stream limit"), "stream_limit"),
    (re.compile(r"(?i)label value too long|label name too long"), "label_value_too_long"),
    (re.compile(r"(?i)max_label_names_per_series|has \d+ label names"), "max_label_names_per_series"),
)
#: reasons caused by structured metadata the server cannot take: resend without it
_SM_REASONS = {"disallowed_structured_metadata", "structured_metadata_unsupported"}


def drop_reasons(text: str, entries: int) -> dict[str, int]:
    """Reasons and entry counts from the body of a 400. Loki writes one message per refused
    entry; a body we do not recognise counts the whole batch as `bad_request`."""
    counts: dict[str, int] = {}
    for line in text.splitlines():
        for rx, reason in _REASONS:
            if rx.search(line):
                counts[reason] = counts.get(reason, 0) + 1
                break
    if not counts:
        return {"bad_request": entries}
    total = sum(counts.values())
    if total > entries:  # per-stream messages (structured metadata) cover several entries
        scale = entries / total
        counts = {k: max(1, round(v * scale)) for k, v in counts.items()}
    return counts


class ShipError(Exception):
    """Cannot go on (retries exhausted, positions not writable)."""


@dataclass
class Options:
    batch_wait: float = 1.0
    batch_bytes: int = 1 << 20
    structured_metadata: str = "auto"  # auto | on | off
    once: bool = False
    poll_interval: float = 0.05
    backoff_min: float = 0.5
    backoff_max: float = 300.0
    max_retries: int = 0  # 0 = retry for ever
    shutdown_timeout: float = 10.0
    push_format: str = "protobuf"  # protobuf | json


@dataclass
class Batch:
    streams: dict[tuple, list[Entry]] = field(default_factory=dict)
    count: int = 0
    size: int = 0
    started: float = 0.0
    positions: dict[str, Position] = field(default_factory=dict)

    def add(self, e: Entry) -> None:
        if not self.count:
            self.started = time.monotonic()
        lst = self.streams.get(e.stream)
        if lst is None:
            self.streams[e.stream] = [e]
        else:
            lst.append(e)
        self.count += 1
        self.size += e.size + 64


class Shipper:
    def __init__(
        self,
        followers: list[Follower],
        encoder: Encoder,
        client: LokiClient,
        positions: Positions,
        options: Options,
        *,
        metrics: Metrics | None = None,
        log=None,
    ):
        self.followers = followers
        self.encoder = encoder
        self.client = client
        self.positions = positions
        self.opt = options
        self.metrics = metrics or Metrics()
        self.log = log or (lambda msg: print(f"kaudit-shipper: {msg}", file=sys.stderr, flush=True))
        self.stop = threading.Event()
        self.abort = threading.Event()  # a second stop request: give up flushing at once
        self.batch = Batch()
        self.send_metadata = options.structured_metadata == "on"
        self._proto = None  # ProtoRenderer, made once the encoder is configured
        self.on_ack = None  # called with {path: Position} after each acknowledged batch (webhook spool clean-up)
        self._stop_deadline: float | None = None
        self._gave_up = False  # stopping and the batch was not acknowledged in time: do not push it again

    # ------------------------------------------------------------------ setup
    def detect_structured_metadata(self) -> bool:
        """--structured-metadata auto: ask buildinfo (retried like a push: Loki may be starting)."""
        if self.opt.structured_metadata != "auto":
            self.send_metadata = self.opt.structured_metadata == "on"
            return True
        delays = backoff_delays(self.opt.backoff_min, self.opt.backoff_max)
        attempt = 0
        while True:
            r = self.client.buildinfo()
            if r.ok or r.status in (401, 403, 404):
                major = loki_major(r.text) if r.ok else None
                self.send_metadata = bool(major and major >= 3)
                self.log(
                    f"Loki {'version ' + str(major) + '.x' if major else 'version unknown'} at {self.client.base_url}: "
                    f"structured metadata {'on' if self.send_metadata else 'off'}"
                )
                return True
            attempt += 1
            if not self._wait_retry(r, attempt, delays, what="asking Loki's version",
                                    url=self.client.base_url + BUILDINFO_PATH):
                return False

    def start(self) -> None:
        for f in self.followers:
            initial = f.resume(self.positions.get(f.path))
            if initial is not None:
                self.positions.set(f.path, initial)
            self._drain_notes(f)
        self.positions.save()

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        """Ship until stopped (or, with once, until every file is read to its end). Returns
        the number of entries acknowledged."""
        if not self.detect_structured_metadata():
            return 0
        self.encoder.configure(structured_metadata=self.send_metadata)
        self.start()
        sent_before = self._sent()
        enc = self.encoder.encode
        batch_bytes = self.opt.batch_bytes
        while not self.stop.is_set():
            progressed = False
            for f in self.followers:
                chunk = f.read()
                if f.notes:
                    self._drain_notes(f)
                if chunk is None:
                    continue
                progressed = True
                if not chunk.lines:
                    continue
                read_ns = time.time_ns()
                off = chunk.start
                self.metrics.inc("kaudit_shipper_lines_read_total", len(chunk.lines))
                b = self.batch
                streams = b.streams
                for line in chunk.lines:  # the hot loop: Batch.add inlined
                    off += len(line) + 1
                    if not line or (line[0] != 123 and line.isspace()):  # 123 = "{"
                        continue
                    e = enc(line, read_ns)
                    lst = streams.get(e.stream)
                    if lst is None:
                        streams[e.stream] = [e]
                        if not b.count:
                            b.started = time.monotonic()
                    else:
                        lst.append(e)
                    b.count += 1
                    b.size += e.size + 64
                    if b.size >= batch_bytes:
                        b.positions[f.path] = Position(chunk.dev, chunk.ino, off, chunk.file)
                        if not self.flush():
                            self._finish()
                            return self._sent() - sent_before
                        b = self.batch
                        streams = b.streams
                self.batch.positions[f.path] = Position(chunk.dev, chunk.ino, off, chunk.file)
                if self.stop.is_set():
                    break
            b = self.batch
            if b.count and time.monotonic() - b.started >= self.opt.batch_wait:
                if not self.flush():
                    break
            if not progressed:
                if self.opt.once and all(f.at_end for f in self.followers):
                    break
                if b.positions and not b.count:
                    self.flush()  # only blank lines: just move the positions
                self.stop.wait(self.opt.poll_interval)
        self._finish()
        return self._sent() - sent_before

    def _sent(self) -> int:
        return int(self.metrics.total("kaudit_shipper_entries_sent_total"))

    def _finish(self) -> int:
        """Flush what was read (bounded by the shutdown timeout when stopping) and save positions."""
        if self.stop.is_set() and self._stop_deadline is None:  # one shutdown window, not one per flush
            self._stop_deadline = time.monotonic() + self.opt.shutdown_timeout
        if (self.batch.count or self.batch.positions) and not self._gave_up:
            self.flush()
        self.positions.save()
        for f in self.followers:
            if f.pending_bytes:
                self.log(f"{f.path}: {f.pending_bytes} bytes of an incomplete last line wait for their newline")
            f.close()
        return 0

    def request_stop(self, *_sig) -> None:
        if self.stop.is_set():
            self.abort.set()
        self.stop.set()

    # ------------------------------------------------------------------ push
    def flush(self) -> bool:
        """Push the batch until Loki acknowledges it (or refuses it with a 400), then save
        positions. False when stopping or retries are exhausted (positions not moved)."""
        b = self.batch
        if not b.count:
            self._ack(b)
            return True
        delays = backoff_delays(self.opt.backoff_min, self.opt.backoff_max)
        attempt = 0
        with_md = self.send_metadata
        while True:
            proto = self.opt.push_format == "protobuf"
            if proto:
                if self._proto is None or self._proto.encoder is not self.encoder:
                    self._proto = ProtoRenderer(self.encoder)
                body = self._proto.render(b.streams, with_md)
                r = self.client.push(body, PROTO_TYPE)
            else:
                body = render_push(self.encoder, b.streams, with_md)
                r = self.client.push(body)
            self.metrics.inc("kaudit_shipper_pushes_total", status=str(r.status))
            if proto and (r.status == 415 or (r.status == 400 and drop_reasons(r.text, b.count).keys() == {"bad_request"})):
                # a server (or proxy) that cannot read protobuf pushes: JSON from now on, same batch again
                self.opt.push_format = "json"
                self.log(f"{self.client.push_url} does not take protobuf pushes (HTTP {r.status}: {_first_line(r.text)}); sending JSON from now on")
                continue
            if r.ok:
                # ack first: it publishes the malformed/truncated counters, so a scrape that
                # sees these entries as sent also sees what was counted while encoding them
                self._ack(b)
                self.metrics.inc("kaudit_shipper_entries_sent_total", b.count)
                self.metrics.inc("kaudit_shipper_bytes_sent_total", len(body))
                self.metrics.set("kaudit_shipper_last_push_timestamp_seconds", time.time())
                return True
            if r.status == 400:
                reasons = drop_reasons(r.text, b.count)
                if with_md and _SM_REASONS & set(reasons):
                    with_md = self.send_metadata = False
                    self.log(f"Loki at {self.client.base_url} refuses structured metadata ({r.text.strip()[:200]}); sending without it from now on")
                    continue
                for reason, n in reasons.items():
                    self.metrics.inc("kaudit_shipper_dropped_entries_total", n, reason=reason)
                self.log(f"Loki refused {sum(reasons.values())} of {b.count} entries (400: {', '.join(sorted(reasons))}): {_first_line(r.text)}")
                self._ack(b)
                return True
            if r.status == 413 and b.count > 1:
                self.log("push body too large for the server (413): halving --batch-bytes")
                self.opt.batch_bytes = max(64 * 1024, self.opt.batch_bytes // 2)
            attempt += 1
            if not self._wait_retry(r, attempt, delays, what=f"pushing {b.count} entries"):
                return False

    def _wait_retry(self, r: Reply, attempt: int, delays, what: str, url: str | None = None) -> bool:
        if self.opt.max_retries and attempt > self.opt.max_retries:
            raise ShipError(
                f"gave up {what} at {url or self.client.push_url} after {attempt} attempts: {_describe(r)}"
            )
        delay = next(delays)
        if self._stop_deadline is not None:
            left = self._stop_deadline - time.monotonic()
            if left <= 0:
                self.log(f"stopping with {self.batch.count} entries not acknowledged ({_describe(r)}); they are sent again on the next start")
                self._gave_up = True
                return False
            delay = min(delay, left)
        self.metrics.inc("kaudit_shipper_retries_total")
        if attempt == 1 or attempt % 10 == 0:
            self.log(f"{what} failed ({_describe(r)}); retrying in {delay:.1f}s (attempt {attempt})")
        if self._stop_deadline is not None:
            # stopping: self.stop is already set and would not wait at all, so the retries
            # would hammer Loki until the deadline; keep the backoff, unless asked to stop again
            if self.abort.wait(delay):
                self.log(f"stopping with {self.batch.count} entries not acknowledged; they are sent again on the next start")
                self._gave_up = True
                return False
            return True
        if self.stop.wait(delay) and self._stop_deadline is None:
            # stop requested while waiting: one more bounded round to flush
            self._stop_deadline = time.monotonic() + self.opt.shutdown_timeout
        return True

    def _ack(self, b: Batch) -> None:
        for path, pos in b.positions.items():
            self.positions.set(path, pos)
            self.metrics.set("kaudit_shipper_acked_offset_bytes", pos.offset, path=path)
        self.positions.save()
        if self.on_ack is not None and b.positions:
            self.on_ack(b.positions)
        self.batch = Batch()
        c = self.encoder.counters
        for name, val, lbl in (
            ("kaudit_shipper_malformed_lines_total", c.malformed, {}),
            ("kaudit_shipper_truncated_events_total", c.truncated, {"how": "bodies_removed"}),
            ("kaudit_shipper_truncated_events_total", c.cut, {"how": "cut"}),
        ):
            self.metrics.set(name, val, **lbl)
        for f in self.followers:
            self.metrics.set("kaudit_shipper_rotations_total", f.rotations, path=f.path)
            self.metrics.set("kaudit_shipper_truncations_total", f.truncations, path=f.path)

    def _drain_notes(self, f: Follower) -> None:
        for n in f.notes:
            self.log(n)
        f.notes.clear()


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0][:300]


def _describe(r: Reply) -> str:
    if r.status == 0:
        return f"no answer: {r.text}"
    return f"HTTP {r.status}: {_first_line(r.text)}"


def stats_line(m: Metrics, enc: Encoder, seconds: float) -> str:
    c = enc.counters
    sent = int(m.total("kaudit_shipper_entries_sent_total"))
    dropped = int(m.total("kaudit_shipper_dropped_entries_total"))
    return (
        f"shipped {sent} entries in {seconds:.1f}s; malformed {c.malformed}, bodies removed {c.truncated}, "
        f"cut {c.cut}, refused by Loki {dropped}, retries {int(m.total('kaudit_shipper_retries_total'))}"
    )


