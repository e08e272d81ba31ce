"""A camera's side of HTTP authentication (Basic, RFC 7617; Digest, RFC 7616 and RFC 2069).

The lab's snapshot server (HTTP) and stream server (RTSP) both challenge with a :class:`Gate`
and check the answer, as a camera does: 401 with a challenge, then 200 for the right answer.
Nonces are stateless (a timestamp and its HMAC under a per-gate key) so a city of cameras keeps
no per-client state, and an old nonce gets ``stale=true``, which netwatch answers once more.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

from netwatch.probes.httpauth import parse_challenges

Scheme = Literal["basic", "digest"]
Verdict = Literal["ok", "missing", "refused", "stale"]


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Gate:
    """One camera's credentials and how it asks for them.

    ``qop``: Digest with ``qop="auth"`` (RFC 7616, what web servers send); without it, RFC 2069,
    still what many cameras' RTSP servers send.
    """

    username: str = field(repr=False)
    password: str = field(repr=False)
    scheme: Scheme = "digest"
    realm: str = "netwatch-lab"
    qop: bool = True
    nonce_ttl_s: float = 300.0
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(16), repr=False)

    def challenge(self, *, stale: bool = False) -> str:
        """Return a ``WWW-Authenticate`` value."""
        if self.scheme == "basic":
            return f'Basic realm="{self.realm}"'
        parts = [f'realm="{self.realm}"', f'nonce="{self._nonce()}"', "algorithm=MD5"]
        if self.qop:
            parts.append('qop="auth"')
        if stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)

    def check(self, method: str, uri: str, authorization: str | None) -> Verdict:
        """Judge an ``Authorization`` header sent with ``method`` for the request-line ``uri``."""
        if not authorization:
            return "missing"
        if self.scheme == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode("ascii")
            scheme, _, token = authorization.partition(" ")
            ok = scheme.lower() == "basic" and hmac.compare_digest(token.strip(), expected)
            return "ok" if ok else "refused"
        answers = parse_challenges([authorization])  # credentials use the challenge's auth-param syntax
        if not answers or answers[0].scheme != "digest":
            return "refused"
        p = answers[0].params
        nonce = p.get("nonce", "")
        if p.get("username") != self.username or p.get("realm") != self.realm or p.get("uri") != uri:
            return "refused"
        age = self._nonce_age(nonce)
        if age is None:
            return "refused"
        ha1 = _md5(f"{self.username}:{self.realm}:{self.password}")
        ha2 = _md5(f"{method}:{uri}")
        if self.qop:
            if p.get("qop") != "auth":
                return "refused"
            expected = _md5(f"{ha1}:{nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}")
        else:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        if not hmac.compare_digest(p.get("response", ""), expected):
            return "refused"
        # The right password on an expired nonce: stale, so the client retries without asking a person.
        return "stale" if age > self.nonce_ttl_s else "ok"

    def _nonce(self) -> str:
        stamp = f"{time.time():.3f}"
        mac = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return base64.urlsafe_b64encode(f"{stamp}:{mac}".encode()).decode("ascii")

    def _nonce_age(self, nonce: str) -> float | None:
        """Seconds since this gate made ``nonce``; None if it did not make it."""
        try:
            stamp, _, mac = base64.urlsafe_b64decode(nonce.encode("ascii")).decode("ascii").partition(":")
            made = float(stamp)
        except ValueError:  # also binascii.Error and UnicodeError
            return None
        expected = hmac.new(self._key, stamp.encode(), hashlib.sha256).hexdigest()[:24]
        return time.time() - made if hmac.compare_digest(mac, expected) else None
