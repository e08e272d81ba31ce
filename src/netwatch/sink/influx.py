"""InfluxDB writer: v1 ``/write`` (InfluxDB 1.x, and 2.x/3.x compatibility) or v2 ``/api/v2/write``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, HttpUrl, model_validator

from netwatch.configbase import Duration, SecretFile, Strict


class InfluxConfig(Strict):
    """Where and how to write. Credentials come only from files."""

    url: HttpUrl = HttpUrl("http://127.0.0.1:8086")
    api: Literal["v1", "v2"] = "v1"
    # v1
    database: str = "netwatch"
    retention_policy: str | None = None
    username_file: SecretFile | None = None
    password_file: SecretFile | None = None
    # v2
    org: str | None = None
    bucket: str | None = None
    token_file: SecretFile | None = None
    # batching and delivery
    batch_size: int = Field(default=5000, ge=1, le=100_000, description="points per write request")
    flush_interval: Duration = Field(default=5.0, description="longest a point waits before a write")
    timeout: Duration = Field(default=10.0, description="one write request")
    gzip: bool = True
    tls: Literal["verify", "insecure"] = "verify"
    ca_file: str | None = None
    max_buffer_points: int = Field(
        default=1_000_000, ge=1000, description="points held while InfluxDB is away; oldest dropped past it"
    )

    @model_validator(mode="after")
    def _api_needs(self) -> InfluxConfig:
        if self.api == "v2" and (not self.org or not self.bucket):
            raise ValueError("api v2 needs org and bucket")
        if (self.username_file is None) != (self.password_file is None):
            raise ValueError("username_file and password_file go together")
        return self
