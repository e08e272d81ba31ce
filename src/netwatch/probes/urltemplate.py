"""Probe URLs written once for many devices (``rtsp://{address}:554/stream1``), checked at load.

A URL that a probe requests also appears in its details, the CLI and the logs, so it must never
carry a secret: user:password@ in the authority and credential-like query parameters are refused
when the config is loaded, with a message that points at ``username_file``/``password_file``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
#: Query parameter names cameras use for credentials (Foscam ``usr``/``pwd``, others ``user``, ``token``).
_CREDENTIAL_PARAMS = frozenset(
    {"user", "username", "usr", "login", "password", "pass", "passwd", "pwd", "token", "auth", "apikey", "api_key"}
)
#: Stands in for ``{address}`` while the template is checked (TEST-NET-1, RFC 5737).
_SAMPLE_ADDRESS = "192.0.2.1"


def check_template(value: object, schemes: tuple[str, ...]) -> str:
    """Validate a URL template: one of ``schemes``, a host, no credentials; return it stripped.

    The messages never repeat the URL, since it may be exactly the secret being refused.
    """
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a URL such as {schemes[0]}://{{address}}/path")
    text = value.strip()
    for name in _PLACEHOLDER.findall(text):
        if name != "address":
            raise ValueError(f"unknown placeholder {{{name}}}; only {{address}} (the device's address) is filled in")
    if "{" in text.replace("{address}", "") or "}" in text.replace("{address}", ""):
        raise ValueError("unbalanced braces; write {address} for the device's address")
    try:
        parts = urlsplit(text.replace("{address}", _SAMPLE_ADDRESS))
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme not in schemes:
        raise ValueError(f"the URL must start with {' or '.join(s + '://' for s in schemes)}")
    if "@" in parts.netloc:
        raise ValueError(
            "the URL must not hold credentials (user:password@): URLs are logged and shown; "
            "put them in files named by username_file and password_file"
        )
    if not parts.hostname:
        raise ValueError("the URL has no host; write {address} for the device's address")
    if port == 0:
        raise ValueError("port 0 is not a valid port")
    for key, _ in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in _CREDENTIAL_PARAMS:
            raise ValueError(
                f"the URL must not hold credentials (query parameter {key!r}): URLs are logged and shown; "
                "put them in files named by username_file and password_file"
            )
    return text


def fill(template: str, address: str) -> str:
    """Put a device's address into a template (an IPv6 address in brackets, as URLs need)."""
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return template.replace("{address}", host)


def for_logs(url: str) -> str:
    """Return the URL without its query, which is nobody's business in a log line or a detail."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path or '/'}" + ("?…" if parts.query else "")
