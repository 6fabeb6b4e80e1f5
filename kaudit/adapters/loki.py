"""A small read client for Loki's HTTP API: /ready, build info, query_range, series, labels.

Every failure becomes one KauditError that names the URL and says what to try
next: a refused connection, a timeout, or a 4xx/5xx with Loki's own error text
(Loki answers errors as plain text, e.g. ``parse error at line 1, col 5: ...``).
``requests`` is imported here, so only commands that talk to Loki pay for it.
"""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Optional

import requests

from kaudit.core.errors import KauditError

#: Loki answers query errors as text/plain; keep the user's error line short
_BODY_CHARS = 300


class LokiError(KauditError):
    """Loki could not be reached or refused a request."""

    def __init__(self, message: str, hint: Optional[str] = None, *, status: Optional[int] = None, url: str = ""):
        super().__init__(message, hint)
        self.status = status
        self.url = url


def _body_text(resp: requests.Response) -> str:
    text = (resp.text or "").strip()
    try:  # JSON error bodies ({"status":"error","error":"..."}) from some proxies and versions
        doc = json.loads(text)
        if isinstance(doc, dict):
            text = str(doc.get("error") or doc.get("message") or text)
    except ValueError:
        pass
    text = " ".join(text.split())
    return text[:_BODY_CHARS] + ("…" if len(text) > _BODY_CHARS else "")


def _ssl_reason(e: Exception) -> str:
    text = str(e)
    for marker in ("CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "hostname mismatch", "WRONG_VERSION_NUMBER"):
        if marker in text:
            start = text.find(marker)
            return text[start:].split("'")[0].split(")")[0].strip()
    return text[:200]


def now_ns() -> int:
    return time.time_ns()


class LokiClient:
    """Read side of Loki. ``url`` is the base URL, e.g. http://127.0.0.1:3100."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        tenant: Optional[str] = None,
        session: Optional[requests.Session] = None,
        auth: Any = None,
    ):
        """``auth``: kaudit.core.loki_auth.LokiCredentials (basic auth, bearer token, CA)."""
        if not url.startswith(("http://", "https://")):
            raise LokiError(
                f"Loki URL {url!r} is not an http(s) URL",
                "write it like http://127.0.0.1:3100",
                url=url,
            )
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        if tenant:
            self.session.headers["X-Scope-OrgID"] = tenant
        if auth is not None:
            if auth.username:
                self.session.auth = (auth.username, str(auth.password or ""))
            if auth.token:
                self.session.headers["Authorization"] = f"Bearer {auth.token}"
        # per request: requests lets $REQUESTS_CA_BUNDLE override a session's verify setting
        self._request_args: dict[str, Any] = {"verify": str(auth.ca_file)} if auth is not None and auth.ca_file else {}

    # -- transport -------------------------------------------------------------
    def _get(self, path: str, params: Optional[Iterable[tuple[str, Any]]] = None) -> requests.Response:
        full = f"{self.url}{path}"
        try:
            resp = self.session.get(full, params=list(params or ()), timeout=self.timeout, **self._request_args)
        except requests.exceptions.SSLError as e:
            raise LokiError(
                f"Loki at {full}: TLS failed: {_ssl_reason(e)}",
                "give the CA that signed Loki's certificate with --loki-ca-file",
                url=full,
            ) from None
        except requests.exceptions.ConnectionError as e:
            reason = "connection refused" if "refused" in str(e).lower() else "cannot connect"
            raise LokiError(
                f"Loki at {full}: {reason}",
                "check that Loki runs and the URL is right (--loki-url), or let kaudit port-forward to svc/loki",
                url=full,
            ) from None
        except requests.exceptions.Timeout:
            raise LokiError(
                f"Loki at {full}: no answer within {self.timeout:g}s",
                "Loki may be overloaded or still starting; try again or raise --timeout",
                url=full,
            ) from None
        except requests.exceptions.RequestException as e:
            raise LokiError(f"Loki at {full}: {type(e).__name__}: {e}", "check --loki-url", url=full) from None
        if resp.status_code >= 400:
            body = _body_text(resp) or resp.reason or ""
            if resp.status_code == 404:
                hint = "is this Loki? check --loki-url (it is the base URL, e.g. http://127.0.0.1:3100)"
            elif resp.status_code in (401, 403):
                hint = ("Loki asks for credentials or a tenant (X-Scope-OrgID); check --loki-tenant, "
                        "--loki-username with --loki-password-file, or --loki-token-file")
            elif resp.status_code == 400:
                hint = "Loki refused the query; check the filters (kaudit query --logql prints it)"
            elif resp.status_code == 429:
                hint = "Loki is rate limiting queries; try again shortly or narrow --since"
            else:
                hint = "Loki is failing; look at its logs (kubectl logs -n kaudit svc/loki) and try again"
            raise LokiError(f"Loki at {full} answered {resp.status_code}: {body}", hint, status=resp.status_code, url=full)
        return resp

    def _json(self, path: str, params: Optional[Iterable[tuple[str, Any]]] = None) -> Any:
        resp = self._get(path, params)
        try:
            doc = resp.json()
        except ValueError:
            raise LokiError(
                f"Loki at {self.url}{path} answered {resp.status_code} with a body that is not JSON",
                "is --loki-url pointing at Loki and not at Grafana or a proxy page?",
                status=resp.status_code,
                url=f"{self.url}{path}",
            ) from None
        if isinstance(doc, dict) and doc.get("status") not in (None, "success"):
            raise LokiError(f"Loki at {self.url}{path}: {doc.get('error') or doc.get('status')}", url=f"{self.url}{path}")
        return doc

    # -- API -------------------------------------------------------------------
    def ready(self) -> str:
        """'ready' when Loki is ready; raises LokiError (with Loki's reason) when not."""
        url = f"{self.url}/ready"
        resp = self._get("/ready")
        body = resp.text.strip()
        # Loki answers exactly "ready"; a 200 with anything else is some other server
        # (a proxy's page, Grafana) and must not pass for Loki
        if body != "ready":
            shown = body.splitlines()[0][:80] if body else "an empty body"
            raise LokiError(
                f"{url} answered 200 with {shown!r}, not Loki's 'ready'",
                "is this Loki? --loki-url is Loki's base URL, e.g. http://127.0.0.1:3100",
                status=resp.status_code,
                url=url,
            )
        return body

    def buildinfo(self) -> dict:
        doc = self._json("/loki/api/v1/status/buildinfo")
        return doc if isinstance(doc, dict) else {}

    def query_range(
        self,
        query: str,
        *,
        start_ns: int,
        end_ns: Optional[int] = None,
        limit: int = 100,
        direction: str = "backward",
        step: Optional[str] = None,
    ) -> dict:
        """The `data` object of /loki/api/v1/query_range (resultType + result).
        ``step`` (e.g. "60s") is the resolution of a metric query's matrix."""
        params = [
            ("query", query),
            ("start", str(start_ns)),
            ("end", str(end_ns if end_ns is not None else now_ns())),
            ("limit", str(limit)),
            ("direction", direction),
        ]
        if step is not None:
            params.append(("step", step))
        doc = self._json("/loki/api/v1/query_range", params)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, dict):
            raise LokiError(f"Loki at {self.url}/loki/api/v1/query_range answered without a data object", url=self.url)
        return data

    def series(self, match: str, *, start_ns: int, end_ns: Optional[int] = None) -> list[dict]:
        """Label sets of the streams matching the selector."""
        params = [("match[]", match), ("start", str(start_ns)), ("end", str(end_ns if end_ns is not None else now_ns()))]
        doc = self._json("/loki/api/v1/series", params)
        data = doc.get("data") if isinstance(doc, dict) else None
        return [d for d in (data or []) if isinstance(d, dict)]

    def labels(self, *, start_ns: Optional[int] = None, end_ns: Optional[int] = None) -> list[str]:
        params = []
        if start_ns is not None:
            params.append(("start", str(start_ns)))
        if end_ns is not None:
            params.append(("end", str(end_ns)))
        doc = self._json("/loki/api/v1/labels", params)
        return [str(x) for x in (doc.get("data") or [])] if isinstance(doc, dict) else []

    def close(self) -> None:
        self.session.close()


def stream_entries(data: dict) -> list[tuple[int, str, dict]]:
    """Flatten a streams result to (timestamp ns, line, labels) triples.

    A value may carry a third element (structured metadata with the
    categorize-labels encoding); it is merged into the labels here.
    """
    out: list[tuple[int, str, dict]] = []
    if data.get("resultType") not in (None, "streams"):
        return out
    for stream in data.get("result") or []:
        labels = dict(stream.get("stream") or {})
        for value in stream.get("values") or []:
            if not isinstance(value, (list, tuple)) or len(value) < 2:
                continue
            entry_labels = labels
            if len(value) > 2 and isinstance(value[2], dict):
                extra = value[2].get("structuredMetadata") or {}
                if isinstance(extra, dict):
                    entry_labels = {**labels, **extra}
            try:
                ts = int(value[0])
            except (TypeError, ValueError):
                continue
            out.append((ts, str(value[1]), entry_labels))
    return out
