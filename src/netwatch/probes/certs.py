"""Server certificates as an HTTP check sees them: expiry, names, and a look at one that failed.

When verification fails the handshake is over before anything can be read, yet "expired two days
ago" or "issued for another host" is what the operator needs. :func:`fetch_unverified` makes one
more handshake that does not verify, only to read the leaf certificate for that diagnosis; nothing
is ever sent over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.x509.oid import NameOID

_DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class CertInfo:
    """What a leaf certificate says about its validity and whom it is for."""

    not_after: dt.datetime
    names: tuple[str, ...]

    def days_left(self, now: dt.datetime | None = None) -> float:
        """Return the days until it expires; negative once it has."""
        now = now or dt.datetime.now(dt.UTC)
        return (self.not_after - now).total_seconds() / _DAY_S

    def names_text(self, limit: int = 3) -> str:
        """Return the names it is for, shortened for a detail line."""
        shown = ", ".join(self.names[:limit])
        more = len(self.names) - limit
        return f"{shown} and {more} more" if more > 0 else shown or "no names"


def parse_der(der: bytes) -> CertInfo | None:
    """Return the expiry and names of a DER certificate, or None if it cannot be parsed."""
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names += san.get_values_for_type(x509.DNSName)
        names += [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except (x509.ExtensionNotFound, ValueError):
        pass
    if not names:
        names += [
            str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME) if isinstance(a.value, str)
        ]
    return CertInfo(not_after=cert.not_valid_after_utc, names=tuple(names))


def matches_host(info: CertInfo, host: str) -> bool:
    """Tell whether a certificate names ``host`` (an IP address, or a DNS name with ``*.`` wildcards)."""
    try:
        wanted_ip = ipaddress.ip_address(host)
    except ValueError:
        wanted_ip = None
    for name in info.names:
        if wanted_ip is not None:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(name) == wanted_ip:
                    return True
            continue
        host_l, name_l = host.lower().rstrip("."), name.lower().rstrip(".")
        if name_l == host_l:
            return True
        if name_l.startswith("*.") and "." in host_l and host_l.split(".", 1)[1] == name_l[2:]:
            return True
    return False


@cache
def _unverified_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def fetch_unverified(host: str, port: int) -> CertInfo | None:
    """Handshake without verification and return the server's leaf certificate, or None.

    The caller bounds the time (it runs inside the check's deadline). Connection errors give None:
    the diagnosis is a bonus, the verification failure is already the result.
    """
    try:
        _, writer = await asyncio.open_connection(host, port, ssl=_unverified_context(), server_hostname=host)
    except (OSError, ssl.SSLError):
        return None
    try:
        obj = writer.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True) if obj is not None else None
        return parse_der(der) if der else None
    finally:
        # Abort rather than close: waiting for the TLS close_notify gains nothing here.
        writer.transport.abort()
