"""Loki's protobuf push body: pure, standard library only.

Loki takes ``Content-Type: application/x-protobuf`` pushes: a ``logproto.PushRequest``
(grafana/loki pkg/push/push.proto) compressed in snappy's block format. Promtail and
Alloy push this way. For the shipper it matters because protobuf carries each line as
length + bytes: the audit line is pasted as it is, where JSON has to escape every quote
of it (most of a JSON push's CPU time). Snappy's block format allows a body made only
of literal elements, so "compressing" is a length header, not a compressor.

Wire format used (proto3; all fields length-delimited unless noted):
  PushRequest     streams=1 (StreamAdapter, repeated)
  StreamAdapter   labels=1 (string, `{k="v", ...}`), entries=2 (EntryAdapter, repeated)
  EntryAdapter    timestamp=1 (google.protobuf.Timestamp: seconds=1, nanos=2, varints),
                  line=2 (string), structuredMetadata=3 (LabelPairAdapter: name=1, value=2)
"""

from __future__ import annotations

import json

CONTENT_TYPE = "application/x-protobuf"

_SMALL = [bytes([n]) if n < 128 else bytes([(n & 127) | 128, n >> 7]) for n in range(16384)]


def varint(n: int) -> bytes:
    if n < 16384:
        return _SMALL[n]
    # the common large values, unrolled: line lengths, nanoseconds (< 2^30), seconds (< 2^35)
    if n < 1 << 21:
        return bytes((n & 127 | 128, n >> 7 & 127 | 128, n >> 14))
    if n < 1 << 28:
        return bytes((n & 127 | 128, n >> 7 & 127 | 128, n >> 14 & 127 | 128, n >> 21))
    if n < 1 << 35:
        return bytes((n & 127 | 128, n >> 7 & 127 | 128, n >> 14 & 127 | 128, n >> 21 & 127 | 128, n >> 28))
    out = bytearray()
    while n > 127:
        out.append((n & 127) | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def snappy_literal(data: bytes) -> bytes:
    """`data` as one snappy block made of literal elements (valid input for any snappy decoder)."""
    out = [varint(len(data))]
    pos, n = 0, len(data)
    while pos < n:
        size = min(n - pos, 1 << 32)
        x = size - 1
        if x < 60:
            out.append(bytes([x << 2]))
        elif x < 1 << 8:
            out.append(bytes([60 << 2, x]))
        elif x < 1 << 16:
            out.append(bytes([61 << 2]) + x.to_bytes(2, "little"))
        elif x < 1 << 24:
            out.append(bytes([62 << 2]) + x.to_bytes(3, "little"))
        else:
            out.append(bytes([63 << 2]) + x.to_bytes(4, "little"))
        out.append(data[pos:pos + size])
        pos += size
    return b"".join(out)


def label_string(labels: dict[str, str]) -> str:
    """Prometheus label text as Loki parses it: {a="x", b="y"} (sorted, values quoted)."""
    return "{" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in sorted(labels.items())) + "}"


def _unescaped(raw: bytes) -> bytes:
    """A JSON string's raw content (as cut from the line) as the text it stands for."""
    if b"\\" not in raw:
        return raw
    return json.loads(b'"' + raw + b'"').encode("utf-8")


class ProtoRenderer:
    """Renders batches for one Encoder; caches what repeats (stream labels, metadata values)."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self._streams: dict[tuple, bytes] = {}
        self._md: dict[tuple, bytes] = {}
        self._secs: dict[int, bytes] = {}
        names = [n.encode() for n in encoder.md_names]
        self._pair_head = [b"\x0a" + varint(len(n)) + n + b"\x12" for n in names]
        # audit_id is unique per event: kept out of the cache key of the other values
        self._aid = encoder.md_names.index("audit_id") if "audit_id" in encoder.md_names else -1
        # field 3 + pair header of an audit_id of each length (a UUID: 36), for values without escapes
        self._aid_head = {} if self._aid < 0 else {
            n: self._pair(self._aid, b"x" * n)[:-n] for n in range(1, 100)}

    def _stream_field(self, stream: tuple) -> bytes:
        b = self._streams.get(stream)
        if b is None:
            text = label_string(self.encoder.stream_labels(stream)).encode("utf-8")
            b = self._streams[stream] = b"\x0a" + varint(len(text)) + text
        return b

    def _pair(self, i: int, raw: bytes) -> bytes:
        v = _unescaped(raw)
        pair = b"%b%b%b" % (self._pair_head[i], varint(len(v)), v)
        return b"\x1a" + varint(len(pair)) + pair

    def _metadata(self, md: tuple) -> bytes:
        aid = self._aid
        key = md[aid + 1:] if aid == 0 else md
        rest = self._md.get(key)
        if rest is None:
            if len(self._md) > 20000:
                self._md.clear()
            rest = self._md[key] = b"".join(
                [self._pair(i, v) for i, v in enumerate(md) if v and i != aid])
        if aid >= 0:
            v = md[aid]
            if v:
                pre = self._aid_head.get(len(v)) if b"\\" not in v else None
                if pre is None:
                    return self._pair(aid, v) + rest
                return pre + v + rest
        return rest

    def render(self, streams: dict, with_metadata: bool) -> bytes:
        """The snappy-framed protobuf push body for entries grouped by stream.

        Built as one list of pieces joined once: lengths are summed, not measured on
        joined copies, so each line is copied a single time."""
        secs_cache = self._secs
        if len(secs_cache) > 4096:
            secs_cache.clear()
        mdc, aid_head, metadata = self._md, self._aid_head, self._metadata
        fast_md = with_metadata and self._aid == 0  # audit_id first: the common layout, inlined below
        pieces: list[bytes] = []
        add = pieces.append
        total = 0
        for stream, entries in streams.items():
            sf = self._stream_field(stream)
            head = len(pieces)
            add(b"")  # the stream's tag and length, known at its end
            add(sf)
            size = len(sf)
            for e in entries:
                secs, nanos = divmod(e.ts, 1_000_000_000)
                pre = secs_cache.get(secs)  # Timestamp: seconds=1, then the tag of nanos=2
                if pre is None:
                    pre = secs_cache[secs] = b"\x08" + varint(secs) + b"\x10"
                nv = varint(nanos)
                line = e.line
                ll = len(line)
                lv = varint(ll)
                md = e.md
                if not md or not with_metadata:
                    md = b""
                elif fast_md and (rest := mdc.get(md[1:])) is not None and (a := md[0]) and \
                        (h := aid_head.get(len(a))) is not None and b"\\" not in a:
                    md = h + a + rest
                else:
                    md = metadata(md)
                # EntryAdapter: timestamp=1, line=2 (its bytes as they are), structuredMetadata=3
                tl = len(pre) + len(nv)
                n = 2 + tl + 1 + len(lv) + ll + len(md)
                ev = varint(n)
                add(b"\x12%b\x0a%b%b%b\x12%b" % (ev, _SMALL[tl], pre, nv, lv))
                add(line)
                if md:
                    add(md)
                size += 1 + len(ev) + n
            sv = varint(size)
            pieces[head] = b"\x0a" + sv
            total += 1 + len(sv) + size
        return snappy_header(total) + b"".join(pieces)


def snappy_header(n: int) -> bytes:
    """The snappy block header for `n` bytes sent as literal elements: one element up to 4 GiB."""
    if n == 0:
        return b"\x00"
    x = n - 1
    if x < 60:
        tag = bytes([x << 2])
    elif x < 1 << 8:
        tag = bytes([60 << 2, x])
    elif x < 1 << 16:
        tag = bytes([61 << 2]) + x.to_bytes(2, "little")
    elif x < 1 << 24:
        tag = bytes([62 << 2]) + x.to_bytes(3, "little")
    else:
        tag = bytes([63 << 2]) + x.to_bytes(4, "little")
    return varint(n) + tag
