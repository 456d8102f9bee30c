"""Bearer tokens for OTLP exports, obtained from the herald's auth endpoint with a credential."""

from __future__ import annotations

import json
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable

_log = logging.getLogger("helixobs")

Credential = str | Callable[[], str]

# Refresh when less than this fraction of the lifetime is left (and never later than
# MIN_MARGIN_S before expiry), so an export never goes out with an expired token.
REFRESH_FRACTION = 0.2
MIN_MARGIN_S = 5.0
DEFAULT_TIMEOUT_S = 10.0


class AuthError(RuntimeError):
    """The auth endpoint could not issue a token for this instrument."""


def _normalise_url(endpoint: str) -> str:
    if "://" not in endpoint:
        endpoint = "http://" + endpoint
    return endpoint


class TokenSource:
    """Fetches, caches and refreshes the bearer token; safe to share between exporters."""

    def __init__(
        self,
        instrument_id: str,
        credential: Credential,
        auth_endpoint: str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._instrument_id = instrument_id
        self._credential = credential
        self._url = _normalise_url(auth_endpoint)
        self._timeout_s = timeout_s
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at = 0.0
        self._lock = threading.Lock()
        self.fetch_count = 0
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def _after_in_child() -> None:
                source = ref()
                if source is not None:
                    source._lock = threading.Lock()

            os.register_at_fork(after_in_child=_after_in_child)

    @property
    def url(self) -> str:
        return self._url

    def _credential_value(self) -> str:
        value = self._credential() if callable(self._credential) else self._credential
        if not isinstance(value, str) or not value:
            raise AuthError("helixobs: the credential (or credential callable) gave no string")
        return value

    def _tls_context(self) -> ssl.SSLContext | None:
        """An https auth endpoint is the herald's API: it trusts the CA the OTLP exports trust
        (OTEL_EXPORTER_OTLP_CERTIFICATE) when one is set, else the system's."""
        ca = os.environ.get("OTEL_EXPORTER_OTLP_CERTIFICATE", "").strip()
        if not ca or not self._url.lower().startswith("https://"):
            return None
        try:
            return ssl.create_default_context(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise AuthError(
                f"helixobs: cannot read the CA file {ca!r} (OTEL_EXPORTER_OTLP_CERTIFICATE) "
                f"for auth endpoint {self._url}: {exc}"
            ) from exc

    def _fetch(self) -> tuple[str, float]:
        body = json.dumps(
            {"instrument_id": self._instrument_id, "credential": self._credential_value()}
        ).encode()
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"content-type": "application/json", "accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(
                request, timeout=self._timeout_s, context=self._tls_context()
            ) as response:
                payload = json.loads(response.read().decode() or "{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:200]
            raise AuthError(
                f"helixobs: auth endpoint {self._url} refused instrument "
                f"{self._instrument_id!r}: HTTP {exc.code} {detail}".rstrip()
            ) from exc
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AuthError(f"helixobs: cannot reach auth endpoint {self._url}: {reason}") from exc
        except ValueError as exc:
            raise AuthError(f"helixobs: auth endpoint {self._url} did not return JSON") from exc
        token = payload.get("token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"helixobs: auth endpoint {self._url} returned no token")
        try:
            expires_in = float(payload.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        self.fetch_count += 1
        return token, max(0.0, expires_in)

    def refresh(self) -> str:
        """Fetch a new token now (raises `AuthError` on failure)."""
        token, lifetime = self._fetch()
        now = self._clock()
        margin = max(lifetime * REFRESH_FRACTION, min(MIN_MARGIN_S, lifetime))
        with self._lock:
            self._token = token
            self._expires_at = now + lifetime
            self._refresh_at = now + lifetime - margin
        return token

    def get(self) -> str | None:
        """Current token, refreshed first when close to expiry.

        A failed refresh keeps the old token while it is still valid (the next export
        retries); it never raises, since exports run in the background.
        """
        now = self._clock()
        with self._lock:
            token, refresh_at, expires_at = self._token, self._refresh_at, self._expires_at
        if token is not None and now < refresh_at:
            return token
        try:
            return self.refresh()
        except AuthError as exc:
            if token is not None and now < expires_at:
                _log.warning("%s; keeping the current token until it expires", exc)
                return token
            _log.error("%s; exporting without a valid token", exc)
            return token

    def header(self) -> tuple[str, str] | None:
        token = self.get()
        return None if token is None else ("authorization", f"Bearer {token}")
