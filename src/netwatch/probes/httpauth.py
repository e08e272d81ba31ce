"""HTTP authentication answers (Basic, RFC 7617; Digest, RFC 7616 and RFC 2069) for HTTP and RTSP.

RTSP borrows HTTP's ``WWW-Authenticate``/``Authorization`` scheme, so the camera probes share this
module: one asks a snapshot over HTTP, the other a stream description over RTSP. Credentials are
only sent in answer to a challenge, and ``auth: digest`` never sends a password in clear (Basic).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

AuthMode = Literal["auto", "digest", "basic"]

#: Digest algorithms we answer, by name as a challenge spells it (upper-cased).
_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda b: hashlib.md5(b, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda b: hashlib.sha256(b).hexdigest(),
    "SHA-512-256": lambda b: hashlib.new("sha512_256", b).hexdigest(),
}
# Preference when a server offers several Digest challenges (RFC 7616 3.7: strongest first).
_STRENGTH = {"SHA-512-256": 3, "SHA-256": 2, "MD5": 1}

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge from a ``WWW-Authenticate`` header: a scheme (lower case) and its parameters."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Parse every challenge in one or more ``WWW-Authenticate`` values, skipping what is malformed.

    One header may hold several challenges (``Digest realm="a", nonce="b", Basic realm="a"``): a
    token not followed by ``=`` starts the next one.
    """
    found: list[Challenge] = []
    for header in headers:
        text = header
        pos = 0
        current: Challenge | None = None
        while pos < len(text):
            while pos < len(text) and text[pos] in " \t,":
                pos += 1
            match = _TOKEN.match(text, pos)
            if match is None:
                break  # garbage: keep what was parsed so far
            word, pos = match.group(), match.end()
            rest = pos
            while rest < len(text) and text[rest] in " \t":
                rest += 1
            if rest < len(text) and text[rest] == "=" and current is not None:
                value_at = rest + 1
                while value_at < len(text) and text[value_at] in " \t":
                    value_at += 1
                quoted = _QUOTED.match(text, value_at)
                if quoted is not None:
                    value = re.sub(r"\\(.)", r"\1", quoted.group(1))
                    pos = quoted.end()
                else:
                    plain = _TOKEN.match(text, value_at)
                    # token68 values (Basic/Bearer data) may end in "="; take them as they are
                    value = plain.group() if plain is not None else ""
                    pos = plain.end() if plain is not None else value_at
                    while pos < len(text) and text[pos] == "=":
                        pos += 1
                current.params[word.lower()] = value
            else:
                current = Challenge(word.lower())
                found.append(current)
    return found


@dataclass(frozen=True, slots=True)
class Credentials:
    """A user name and password, read from files; kept out of reprs so they cannot leak into logs."""

    username: str = field(repr=False)
    password: str = field(repr=False)


class Authenticator:
    """Answers one chosen challenge, request after request (Digest counts its nonce uses)."""

    def __init__(self, challenge: Challenge, creds: Credentials, *, cnonce: str | None = None) -> None:
        self.challenge = challenge
        self._creds = creds
        self._cnonce = cnonce
        self._count = 0

    @property
    def scheme(self) -> str:
        return "Digest" if self.challenge.scheme == "digest" else "Basic"

    def header(self, method: str, uri: str) -> str:
        """Return the ``Authorization`` value for one request (``uri`` as the request line has it)."""
        creds = self._creds
        if self.challenge.scheme == "basic":
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode("ascii")
            return f"Basic {token}"
        params = self.challenge.params
        algorithm = params.get("algorithm", "MD5")
        session_hash = algorithm.upper().endswith("-SESS")
        digest = _HASHES[algorithm.upper().removesuffix("-SESS")]
        realm, nonce = params.get("realm", ""), params.get("nonce", "")
        self._count += 1
        cnonce = self._cnonce or secrets.token_hex(8)
        nc = f"{self._count:08x}"
        ha1 = digest(f"{creds.username}:{realm}:{creds.password}".encode())
        if session_hash:
            ha1 = digest(f"{ha1}:{nonce}:{cnonce}".encode())
        qop = _pick_qop(params.get("qop"))
        ha2 = digest(f"{method}:{uri}".encode())
        if qop == "auth-int":
            # Probes send no body, so the entity hash is the hash of nothing.
            ha2 = digest(f"{method}:{uri}:{digest(b'')}".encode())
        if qop:
            response = digest(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}".encode())
        else:  # RFC 2069, still what many cameras (and gst-rtsp-server) speak
            response = digest(f"{ha1}:{nonce}:{ha2}".encode())
        parts = [
            f'username="{_quote(creds.username)}"',
            f'realm="{_quote(realm)}"',
            f'nonce="{_quote(nonce)}"',
            f'uri="{_quote(uri)}"',
            f'response="{response}"',
        ]
        if "algorithm" in params:
            parts.append(f"algorithm={algorithm}")
        if "opaque" in params:
            parts.append(f'opaque="{_quote(params["opaque"])}"')
        if qop:
            parts += [f"qop={qop}", f"nc={nc}", f'cnonce="{cnonce}"']
        return "Digest " + ", ".join(parts)


def _pick_qop(offered: str | None) -> str | None:
    if offered is None:
        return None
    options = {o.strip().lower() for o in offered.split(",")}
    if "auth" in options:
        return "auth"
    if "auth-int" in options:
        return "auth-int"
    return None


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _digest_usable(challenge: Challenge) -> bool:
    params = challenge.params
    base = params.get("algorithm", "MD5").upper().removesuffix("-SESS")
    qop = params.get("qop")
    return (
        "nonce" in params
        and base in _HASHES
        and params.get("userhash", "false").lower() != "true"
        and (qop is None or _pick_qop(qop) is not None)
    )


def choose(
    challenges: Iterable[Challenge], creds: Credentials, mode: AuthMode, *, cnonce: str | None = None
) -> Authenticator | None:
    """Pick the challenge to answer under ``mode``; None if none of them may be answered.

    ``auto`` answers the strongest Digest challenge and falls back to Basic; ``digest`` never
    answers Basic; ``basic`` answers only Basic.
    """
    offered = list(challenges)
    digests = sorted(
        (c for c in offered if c.scheme == "digest" and _digest_usable(c)),
        key=lambda c: _STRENGTH[c.params.get("algorithm", "MD5").upper().removesuffix("-SESS")],
        reverse=True,
    )
    basics = [c for c in offered if c.scheme == "basic"]
    if mode in ("auto", "digest") and digests:
        return Authenticator(digests[0], creds, cnonce=cnonce)
    if mode in ("auto", "basic") and basics:
        return Authenticator(basics[0], creds, cnonce=cnonce)
    return None


def describe(challenges: Iterable[Challenge]) -> str:
    """Name the schemes a server offered, for a detail line ('Digest (SHA-512), Basic')."""
    names = []
    for c in challenges:
        name = c.scheme.capitalize()
        if c.scheme == "digest" and "algorithm" in c.params:
            name += f" ({c.params['algorithm']})"
        names.append(name)
    return ", ".join(dict.fromkeys(names)) or "no scheme"


def unanswerable(challenges: list[Challenge], mode: AuthMode) -> str:
    """Say why no challenge was answered, and what answering a Basic one would cost."""
    text = f"server offers {describe(challenges)}, which auth: {mode} does not answer"
    if mode == "digest" and any(c.scheme == "basic" for c in challenges):
        text += " (auth: auto or basic would send the password in clear)"
    return text
