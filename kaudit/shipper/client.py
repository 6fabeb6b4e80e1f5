"""The one place the shipper talks HTTP: push bodies to Loki, ask its version.

urllib only (the shipper runs on a stock python image). One attempt per call; the
retry policy lives in the caller (pipeline.py) because it also decides what a 400 means.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import re
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

PUSH_PATH = "/loki/api/v1/push"
BUILDINFO_PATH = "/loki/api/v1/status/buildinfo"


class ConfigError(Exception):
    """A bad option (URL, unreadable credential file)."""


@dataclass
class Reply:
    status: int  # 0 = no HTTP answer (connection refused, timeout, reset)
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Connection errors, 429 and 5xx are worth another try; the file is the buffer."""
        return self.status == 0 or self.status == 429 or self.status >= 500


def split_url(url: str) -> tuple[str, str]:
    """(base URL, push URL) from either Loki's base URL or the full push URL."""
    u = urlsplit(url.strip())
    if u.scheme not in ("http", "https") or not u.netloc:
        raise ConfigError(f"--loki-url {url!r} is not an http(s) URL; give e.g. http://loki:3100")
    path = u.path.rstrip("/")
    for suffix in (PUSH_PATH, "/api/prom/push"):
        if path.endswith(suffix):
            base = path[: -len(suffix)]
            return urlunsplit((u.scheme, u.netloc, base, "", "")), urlunsplit((u.scheme, u.netloc, path, u.query, ""))
    base = urlunsplit((u.scheme, u.netloc, path, "", ""))
    return base, base + PUSH_PATH


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from e


class LokiClient:
    def __init__(
        self,
        url: str,
        *,
        tenant: str | None = None,
        basic_auth_user: str | None = None,
        basic_auth_password_file: str | None = None,
        bearer_token_file: str | None = None,
        ca_file: str | None = None,
        insecure_skip_verify: bool = False,
        timeout: float = 10.0,
        gzip_level: int = 0,
        user_agent: str = "kaudit-shipper",
    ):
        self.base_url, self.push_url = split_url(url)
        self.timeout = timeout
        self.gzip_level = gzip_level
        self._headers = {"User-Agent": user_agent}
        if tenant:
            self._headers["X-Scope-OrgID"] = tenant
        if basic_auth_user is not None:
            password = _read_secret(basic_auth_password_file, "--basic-auth-password-file") if basic_auth_password_file else ""
            token = base64.b64encode(f"{basic_auth_user}:{password}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        self._bearer_file = bearer_token_file
        self._bearer: tuple[float, str] | None = None
        if bearer_token_file:
            self._bearer_header()  # fail early on an unreadable file
        ctx = None
        if self.push_url.startswith("https:"):
            try:
                ctx = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"cannot load --ca-file {ca_file}: {e}") from e
            if insecure_skip_verify:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ctx) if ctx else urllib.request.HTTPHandler()
        )

    def _bearer_header(self) -> str:
        # service-account tokens are rotated on disk: re-read the file when it changes
        mtime = os.stat(self._bearer_file).st_mtime if os.path.exists(self._bearer_file) else 0.0
        if self._bearer is None or self._bearer[0] != mtime:
            self._bearer = (mtime, _read_secret(self._bearer_file, "--bearer-token-file"))
        return f"Bearer {self._bearer[1]}"

    def headers(self) -> dict[str, str]:
        h = dict(self._headers)
        if self._bearer_file:
            h["Authorization"] = self._bearer_header()
        return h

    def _request(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> Reply:
        req = urllib.request.Request(url, data=body, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=self.timeout) as r:
                return Reply(r.status, r.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as e:
            try:
                text = e.read().decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                text = ""
            return Reply(e.code, text or e.reason or "")
        except (urllib.error.URLError, OSError, http.client.HTTPException, socket.timeout) as e:
            reason = getattr(e, "reason", e)
            return Reply(0, f"{type(reason).__name__}: {reason}")

    def push(self, body: bytes, content_type: str = "application/json") -> Reply:
        """POST one push body, JSON or snappy protobuf (gzip-compressed when gzip_level > 0)."""
        headers = self.headers()
        headers["Content-Type"] = content_type
        if self.gzip_level:
            body = gzip.compress(body, compresslevel=self.gzip_level, mtime=0)
            headers["Content-Encoding"] = "gzip"
        return self._request("POST", self.push_url, body, headers)

    def buildinfo(self) -> Reply:
        return self._request("GET", self.base_url + BUILDINFO_PATH, None, self.headers())


def loki_major(buildinfo_text: str) -> int | None:
    """Major version from /loki/api/v1/status/buildinfo; main-branch builds (k123-abc, main-…) count as newest."""
    try:
        version = str(json.loads(buildinfo_text).get("version", ""))
    except (ValueError, AttributeError):
        return None
    m = re.match(r"v?(\d+)\.", version)
    if m:
        return int(m.group(1))
    return 99 if version else None


def backoff_delays(minimum: float = 0.5, maximum: float = 300.0, rand=None):
    """Exponential backoff with jitter: about 0.5 s, 1 s, 2 s ... capped at 5 min, each ±25 %."""
    import random

    rnd = rand or random.random
    d = minimum
    while True:
        yield min(maximum, d) * (0.75 + 0.5 * rnd())
        d = min(maximum, d * 2)
