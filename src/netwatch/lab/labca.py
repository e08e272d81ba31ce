"""The lab's own certificate authority, for portals that finish their redirect chain on HTTPS.

A throwaway CA made with ``cryptography`` (EC P-256, fast to generate). It is kept in the lab's
state directory and reused while it is valid, so a netwatch config written with ``ca_file``
pointing at it still trusts the portals after the lab restarts. Server certificates are issued
afresh at every start, for the addresses the lab serves that time.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterable
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_PEM = serialization.Encoding.PEM
_CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netwatch lab CA (throwaway)")])


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _write_secret(path: Path, data: bytes) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)  # a key, even a lab's, is not for other users of the host
    path.write_bytes(data)


class LabCA:
    """A CA in ``directory`` (``ca.pem``, ``ca.key``): loaded if there and valid, else made."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_file = directory / "ca.pem"
        key_file = directory / "ca.key"
        loaded = self._load(key_file)
        if loaded is None:
            self._key = ec.generate_private_key(ec.SECP256R1())
            now = dt.datetime.now(dt.UTC)
            self._cert = (
                x509.CertificateBuilder()
                .subject_name(_CA_NAME)
                .issuer_name(_CA_NAME)
                .public_key(self._key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=False,
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
            _write_secret(key_file, _key_bytes(self._key))
            self.ca_file.write_bytes(self._cert.public_bytes(_PEM))
        else:
            self._key, self._cert = loaded

    def _load(self, key_file: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
        try:
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(self.ca_file.read_bytes())
        except (OSError, ValueError):
            return None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or cert.public_key() != key.public_key():
            return None
        if cert.not_valid_after_utc < dt.datetime.now(dt.UTC) + dt.timedelta(days=30):
            return None  # nearly expired: a new one, rather than portals that fail in a month
        return key, cert

    def server_context(self, hosts: Iterable[str], *, days_valid: float = 90.0) -> ssl.SSLContext:
        """Issue a certificate for ``hosts`` (IP addresses or names) and return a server context using it."""
        names: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        if not names:
            raise ValueError("a server certificate needs at least one host")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netwatch lab portal")]))
            .issuer_name(_CA_NAME)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days_valid))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        cert_file = self.directory / "portal.pem"
        key_file = self.directory / "portal.key"
        cert_file.write_bytes(cert.public_bytes(_PEM) + self._cert.public_bytes(_PEM))
        _write_secret(key_file, _key_bytes(key))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert_file, key_file)
        return ctx
