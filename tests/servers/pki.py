"""A throwaway certificate authority for TLS tests: a CA and server certificates made on the spot.

Built with ``cryptography`` (already a dependency of netwatch), so no ``openssl`` CLI or
``trustme`` is needed. Keys are EC P-256 (fast to generate). Certificates can be made expired,
not yet valid, or for another host, to test what a client does with each.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_PEM = serialization.Encoding.PEM


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True)
class ServerCert:
    """A server certificate and its key, as PEM files in a directory."""

    cert_file: Path
    key_file: Path
    not_after: dt.datetime

    def server_context(self) -> ssl.SSLContext:
        """Return an SSL context a test server can listen with."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


class TestCA:
    """A private CA that issues server certificates into ``directory``."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "netwatch test CA") -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self._name = _name(name)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / f"{name.replace(' ', '-')}.pem"
        self.cert_file.write_bytes(self._cert.public_bytes(_PEM))

    def issue(
        self,
        *hosts: str,
        days_valid: float = 90.0,
        expired_days_ago: float | None = None,
        file_stem: str | None = None,
    ) -> ServerCert:
        """Issue a server certificate for ``hosts`` (DNS names or IP addresses).

        ``expired_days_ago`` makes one that ended that many days ago (and started a year before).
        """
        now = dt.datetime.now(dt.UTC)
        if expired_days_ago is not None:
            not_after = now - dt.timedelta(days=expired_days_ago)
            not_before = not_after - dt.timedelta(days=365)
        else:
            not_before = now - dt.timedelta(days=1)
            not_after = now + dt.timedelta(days=days_valid)
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        stem = file_stem or "-".join(hosts).replace(":", "_")
        cert_file = self.directory / f"{stem}.crt"
        key_file = self.directory / f"{stem}.key"
        # The chain a server sends: its own certificate, then the CA's.
        cert_file.write_bytes(cert.public_bytes(_PEM) + self._cert.public_bytes(_PEM))
        key_file.write_bytes(key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return ServerCert(cert_file, key_file, not_after)
