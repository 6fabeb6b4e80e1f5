"""Command line of the shipper: ``python -m kaudit.shipper`` and ``kaudit ship``.

Exit codes: 0 done (or stopped by SIGTERM/SIGINT after flushing), 1 error, 2 usage.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sys
import time

from kaudit.shipper import fields as F

EXAMPLE = """\
examples:
  kaudit ship --path /var/log/kubernetes/audit/audit.log --loki-url http://loki:3100
  kaudit ship --listen 127.0.0.1:9443 --tls-cert-file tls.crt --tls-key-file tls.key --loki-url http://loki:3100
  python -m kaudit.shipper --path audit.log --loki-url http://127.0.0.1:3100 --once --start-at beginning
"""

_DUR = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_SIZE = {"": 1, "b": 1, "k": 1024, "kb": 1000, "kib": 1024, "m": 1 << 20, "mb": 1000**2, "mib": 1 << 20}


def duration(text: str) -> float:
    """'1s', '500ms', '1m30s' or a bare number of seconds."""
    s = text.strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    pos, total = 0, 0.0
    for m in _DUR.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (write 500ms, 1s, 5m)")
    return total


def size(text: str) -> int:
    """'256KiB', '1MiB', '1000' bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (write 256KiB, 1MiB or bytes)")
    return int(m.group(1)) * _SIZE[m.group(2).lower()]


def label(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
        raise argparse.ArgumentTypeError(f"{text!r} is not k=v with a Loki label name (letters, digits, _)")
    return k, v


def build_parser(prog: str = "kaudit ship") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Tail the kube-apiserver audit log across rotations and push it to Loki: "
        "batched, retried, positions saved after each acknowledged push.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--path", action="append", metavar="FILE",
                   help="the active audit log file (repeatable); rotated backups next to it are found by inode")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="instead of --path: receive kube-apiserver's audit webhook (EventList POSTs) over TLS here")
    p.add_argument("--loki-url", required=True, metavar="URL",
                   help="Loki's base URL (http://loki:3100) or the full push URL")
    p.add_argument("--positions", default=None, metavar="FILE",
                   help="where device, inode and acknowledged offset are saved (default: /var/lib/kaudit/positions.json; "
                   "with --listen: positions.json in the spool directory)")
    w = p.add_argument_group("webhook receiver (--listen)")
    w.add_argument("--spool-dir", default="/var/lib/kaudit/spool", metavar="DIR",
                   help="accepted batches are fsync'd here before the 200 (default: %(default)s)")
    w.add_argument("--tls-cert-file", metavar="FILE", help="server certificate (PEM, chain first); required with --listen")
    w.add_argument("--tls-key-file", metavar="FILE", help="its private key (PEM); required with --listen")
    w.add_argument("--client-ca-file", metavar="FILE", help="require client certificates signed by this CA")
    w.add_argument("--max-body-bytes", type=size, default=64 << 20, metavar="SIZE",
                   help="larger batches are refused with 413 (default: 64MiB; kube-apiserver's truncating backend sends at most 10MiB)")
    w.add_argument("--spool-max-bytes", type=size, default=1 << 30, metavar="SIZE",
                   help="while the spool holds this much, batches get 503 (default: 1GiB)")
    p.add_argument("--label", action="append", type=label, default=[], metavar="K=V", help="static label (repeatable)")
    p.add_argument("--cluster", default=None, metavar="NAME", help="value of the cluster label (one per cluster sharing a Loki)")
    p.add_argument("--node", default=None, help="value of the node label (default: $NODE_NAME, else the host name)")
    p.add_argument("--dynamic-labels", default=",".join(F.DEFAULT_LABELS), metavar="A,B",
                   help=f"bounded event fields used as labels (default: %(default)s; allowed: {', '.join(sorted(F.ALLOWED_LABELS))}; "
                   "empty for none)")
    p.add_argument("--tenant", help="X-Scope-OrgID header (multi-tenant Loki)")
    p.add_argument("--basic-auth-user")
    p.add_argument("--basic-auth-password-file", metavar="FILE")
    p.add_argument("--bearer-token-file", metavar="FILE", help="re-read when it changes (rotated tokens)")
    p.add_argument("--ca-file", metavar="FILE", help="CA bundle for an https Loki")
    p.add_argument("--insecure-skip-verify", action="store_true", help="do not verify Loki's TLS certificate")
    p.add_argument("--batch-wait", type=duration, default=1.0, metavar="DUR", help="longest wait before a push (default: 1s)")
    p.add_argument("--batch-bytes", type=size, default=1 << 20, metavar="SIZE", help="push when a batch reaches this size (default: 1MiB)")
    p.add_argument("--max-line-bytes", type=size, default=256 * 1024, metavar="SIZE",
                   help="longer events lose requestObject/responseObject, then are cut (default: 256KiB, Loki 3's limit)")
    p.add_argument("--structured-metadata", choices=("auto", "on", "off"), default="auto",
                   help="auto: only when Loki's buildinfo says 3.x or later (Loki 2.x refuses it); default: auto")
    p.add_argument("--start-at", choices=("beginning", "end"), default="beginning",
                   help="where to start a file that has no saved position (default: beginning)")
    p.add_argument("--once", action="store_true", help="ship to the end of the file(s) and exit (backfills, tests, benchmarks)")
    p.add_argument("--metrics-addr", metavar="HOST:PORT", help="serve Prometheus text on http://HOST:PORT/metrics")
    p.add_argument("--push-format", choices=("protobuf", "json"), default="protobuf",
                   help="protobuf (snappy, as Promtail sends; lines are not re-escaped) or json; "
                   "a Loki or proxy that refuses protobuf gets JSON from then on (default: protobuf)")
    p.add_argument("--gzip", type=int, default=0, choices=range(0, 10), metavar="LEVEL",
                   help="gzip push bodies at this level (1-9; default 0 = off: costs CPU, saves bandwidth)")
    p.add_argument("--timeout", type=duration, default=10.0, metavar="DUR", help="HTTP timeout per push (default: 10s)")
    p.add_argument("--backoff-min", type=duration, default=0.5, metavar="DUR", help="first retry delay (default: 500ms)")
    p.add_argument("--backoff-max", type=duration, default=300.0, metavar="DUR", help="longest retry delay (default: 5m)")
    p.add_argument("--max-retries", type=int, default=0, metavar="N",
                   help="give up (exit 1, positions kept) after N retries, N+1 failed attempts; default 0 = retry for ever, the file is the buffer")
    p.add_argument("--shutdown-timeout", type=duration, default=10.0, metavar="DUR",
                   help="on SIGTERM, how long to keep trying to flush the current batch (default: 10s)")
    p.add_argument("--poll-interval", type=duration, default=0.05, metavar="DUR", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")
    return p


def _err(message: str, hint: str | None = None) -> None:
    print(f"error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def main(argv: list[str] | None = None, prog: str = "kaudit ship") -> int:
    parser = build_parser(prog)
    try:
        a = parser.parse_args(argv)
    except SystemExit as e:  # argparse: 0 for --help, 2 for usage errors
        return int(e.code or 0)
    if bool(a.path) == bool(a.listen):
        _err("give either --path (follow the audit log) or --listen (receive the audit webhook)",
             "kaudit ship --help shows both")
        return 2

    from kaudit.shipper.client import ConfigError, LokiClient
    from kaudit.shipper.metrics import Metrics
    from kaudit.shipper.payload import Encoder
    from kaudit.shipper.pipeline import Options, Shipper
    from kaudit.shipper.positions import Positions, PositionsError
    from kaudit.shipper.tail import Follower

    dynamic = tuple(x.strip() for x in a.dynamic_labels.split(",") if x.strip())
    node = a.node or os.environ.get("NODE_NAME") or socket.gethostname()
    static = {F.JOB_LABEL: F.DEFAULT_JOB, F.NODE_LABEL: node}
    if a.cluster is not None:
        try:
            F.check_cluster_name(a.cluster)
        except ValueError as e:
            _err(f"--cluster: {e}", "use the cluster's short name, e.g. prod-eu")
            return 2
        static[F.CLUSTER_LABEL] = a.cluster
    for k, v in a.label:
        if k in F.HIGH_CARDINALITY:
            _err(f"--label {k}={v}: {k!r} names a high-cardinality field", "use another label name")
            return 2
        static[k] = v
    try:
        encoder = Encoder(labels=dynamic, static=static, max_line_bytes=a.max_line_bytes)
    except ValueError as e:
        _err(f"--dynamic-labels: {e}", f"the default is {','.join(F.DEFAULT_LABELS)}")
        return 2
    if a.max_line_bytes < 1024:
        _err(f"--max-line-bytes {a.max_line_bytes} is too small", "use at least 1KiB; Loki 3's default limit is 256KiB")
        return 2
    if a.basic_auth_password_file and a.basic_auth_user is None:
        _err("--basic-auth-password-file needs --basic-auth-user")
        return 2
    try:
        client = LokiClient(
            a.loki_url, tenant=a.tenant, basic_auth_user=a.basic_auth_user,
            basic_auth_password_file=a.basic_auth_password_file, bearer_token_file=a.bearer_token_file,
            ca_file=a.ca_file, insecure_skip_verify=a.insecure_skip_verify, timeout=a.timeout, gzip_level=a.gzip,
        )
        if a.positions is None:
            a.positions = os.path.join(a.spool_dir, "positions.json") if a.listen else "/var/lib/kaudit/positions.json"
        positions = Positions(a.positions).load()
    except (ConfigError, PositionsError) as e:
        _err(str(e), "check the option's value")
        return 2 if isinstance(e, ConfigError) else 1

    log = (lambda msg: None) if a.quiet else (lambda msg: print(f"kaudit-shipper: {msg}", file=sys.stderr, flush=True))
    metrics = Metrics()
    server = None
    if a.metrics_addr:
        _, sep, port = a.metrics_addr.rpartition(":")
        if not sep or not port.isdigit() or int(port) > 65535:
            _err(f"--metrics-addr {a.metrics_addr}: not HOST:PORT with a port from 0 to 65535", "e.g. :9400 or 127.0.0.1:9400")
            return 2
        try:
            server = metrics.serve(a.metrics_addr)
        except (OSError, ValueError) as e:
            _err(f"--metrics-addr {a.metrics_addr}: {e}", "choose a free HOST:PORT such as :9400")
            return 2
    opts = Options(
        batch_wait=a.batch_wait, batch_bytes=a.batch_bytes, structured_metadata=a.structured_metadata, once=a.once,
        poll_interval=a.poll_interval, backoff_min=a.backoff_min, backoff_max=a.backoff_max,
        max_retries=a.max_retries, shutdown_timeout=a.shutdown_timeout, push_format=a.push_format,
    )
    if a.listen:
        return _listen(a, encoder, client, positions, metrics, opts, server, log)
    for p in a.path:
        if os.path.isdir(p):
            _err(f"--path {p}: is a directory, not the audit log file",
                 "give the active log file itself, e.g. /var/log/kubernetes-audit/audit.log")
            return 2
    if a.once:
        missing = [p for p in a.path if not os.path.exists(p)]
        if missing:
            _err(f"audit log not found: {missing[0]}", "check --path (without --once the shipper waits for the file to appear)")
            return 1
    followers = [Follower(p, start_at=a.start_at) for p in a.path]
    shipper = Shipper(followers, encoder, client, positions, opts, metrics=metrics, log=log)
    return _run(shipper, a, encoder, metrics, server, log, ", ".join(a.path))


def _run(shipper, a, encoder, metrics, server, log, what: str, on_exit=None) -> int:
    from kaudit.shipper.pipeline import ShipError, stats_line
    from kaudit.shipper.positions import PositionsError
    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, shipper.request_stop)
        except ValueError:  # not the main thread (embedded use): the caller stops it via request_stop()
            pass
    t0 = time.monotonic()
    try:
        shipper.run()
    except ShipError as e:
        _err(str(e), "check that Loki is up and reachable, then run again: nothing was lost, positions were kept")
        return 1
    except PositionsError as e:
        _err(str(e), "make the positions file's directory writable, or choose another with --positions")
        return 1
    except OSError as e:
        _err(f"{e.filename or what}: {e.strerror or e}", "check that the audit log is readable (root-owned, mode 0600)")
        return 1
    finally:
        if on_exit is not None:
            on_exit()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if server is not None:
            server.shutdown()
            server.server_close()
    log(stats_line(metrics, encoder, time.monotonic() - t0))
    return 0


def _listen(a, encoder, client, positions, metrics, opts, server, log) -> int:
    """--listen: the webhook receiver spools batches; the usual loop ships the spool."""
    from kaudit.shipper.pipeline import Shipper
    from kaudit.shipper.spool import Spool
    from kaudit.shipper.tail import Follower
    from kaudit.shipper.webhook import Receiver

    if a.once:
        _err("--once does not go with --listen (a receiver runs until stopped)", "drop --once")
        return 2
    if not (a.tls_cert_file and a.tls_key_file):
        _err("--listen needs --tls-cert-file and --tls-key-file: the receiver only speaks TLS",
             "kaudit up --mode webhook generates them; by hand: openssl req -x509 -newkey ec ...")
        return 2
    _, sep, port = a.listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        _err(f"--listen {a.listen}: not HOST:PORT with a port from 0 to 65535", "e.g. 127.0.0.1:9443")
        return 2
    try:
        spool = Spool(a.spool_dir, max_bytes=a.spool_max_bytes).open()
    except OSError as e:
        _err(f"--spool-dir {a.spool_dir}: {e.strerror or e}", "choose a writable directory on a persistent disk")
        return 1
    try:
        receiver = Receiver(a.listen, spool, metrics, cert_file=a.tls_cert_file, key_file=a.tls_key_file,
                            client_ca_file=a.client_ca_file, max_body=a.max_body_bytes, log=log)
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        spool.close()
        _err(f"--listen {a.listen}: {getattr(e, 'strerror', None) or e}",
             "check the certificate and key files (PEM) and that the address is free")
        return 2
    shipper = Shipper([Follower(spool.path)], encoder, client, positions, opts, metrics=metrics, log=log)
    shipper.on_ack = lambda acked: [spool.release(p.dev, p.ino) for p in acked.values()]
    receiver.start()
    log(f"receiving the audit webhook on https://{a.listen} (port {receiver.port}); spool {spool.dir}")

    def stop():
        receiver.stop()
        spool.close()

    return _run(shipper, a, encoder, metrics, server, log, spool.path, on_exit=stop)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(prog="python -m kaudit.shipper"))
