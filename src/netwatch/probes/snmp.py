"""SNMP polling (pysnmp 7 asyncio): uptime, IF-MIB interfaces, ENTITY-SENSOR-MIB optics."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from netwatch.configbase import Duration, SecretFile, Strict

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "AES", "AES128", "AES192", "AES256"]


class SnmpConfig(Strict):
    """How to talk SNMP to a device. Every key is optional so that it can be layered
    (``defaults.snmp`` -> ``defaults.kinds.<kind>.snmp`` -> ``devices[].snmp``); what a version
    requires is checked on the merged result by :meth:`problems`."""

    version: Literal["2c", "3"] = "2c"
    port: int = Field(default=161, ge=1, le=65535)
    community_file: SecretFile | None = None
    user: str | None = Field(default=None, description="SNMPv3 user name")
    security_level: Literal["noAuthNoPriv", "authNoPriv", "authPriv"] = "authPriv"
    auth_protocol: AuthProtocol = "SHA256"
    auth_key_file: SecretFile | None = None
    priv_protocol: PrivProtocol = "AES"
    priv_key_file: SecretFile | None = None
    context: str = ""
    timeout: Duration = Field(default=2.0, description="wait for one response")
    retries: int = Field(default=1, ge=0, le=5)
    max_oids_per_request: int = Field(default=40, ge=1, le=200)
    optics: bool = Field(default=True, description="read optical power from ENTITY-SENSOR-MIB")
    rediscover: Duration = Field(default=3600.0, description="re-read port and sensor indexes this often")

    def problems(self) -> list[str]:
        """Return what this (merged) config lacks for its SNMP version."""
        issues: list[str] = []
        if self.version == "2c":
            if self.community_file is None:
                issues.append("SNMP v2c needs community_file")
        else:
            if not self.user:
                issues.append("SNMPv3 needs user")
            if self.security_level != "noAuthNoPriv" and self.auth_key_file is None:
                issues.append(f"SNMPv3 {self.security_level} needs auth_key_file")
            if self.security_level == "authPriv" and self.priv_key_file is None:
                issues.append("SNMPv3 authPriv needs priv_key_file")
        return issues
