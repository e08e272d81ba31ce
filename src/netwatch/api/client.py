"""A small client of a running daemon's API, for the CLI verbs ``netwatch alerts`` and ``netwatch silences``.

It finds the daemon where the config's ``api.listen`` says (a wildcard address means this host's
loopback) and sends the token from ``api.token_file`` when it can read it. Only the ``api``
section is read, so an operator who cannot read the SNMP or receiver secrets can still ask.
Synchronous and standard-library only: a CLI verb makes one or two requests and exits.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from netwatch.api.health import ApiConfig


class ClientConfigError(Exception):
    """The config does not say how to reach the API (unreadable, API disabled, port 0, token unreadable)."""


class ApiUnreachable(Exception):
    """Nothing answers at the API's address (the daemon is not running, or listens elsewhere)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach netwatch at {url}: {reason}")
        self.url = url


class ApiRefused(Exception):
    """The API answered with an error status; ``problems`` lists what a 400 found."""

    def __init__(self, status: int, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.problems = list(problems)


def base_url(cfg: ApiConfig) -> str:
    """Return the URL a client on this host uses for an ``api.listen`` address.

    Raises:
        ClientConfigError: the API is disabled, or listens on port 0 (a port nobody can know).
    """
    if not cfg.enabled:
        raise ClientConfigError("the API is disabled in the config (api.enabled: false)")
    host, port = cfg.host, cfg.port
    if port == 0:
        raise ClientConfigError(f"api.listen is {cfg.listen}: port 0 is chosen at start; pass --url")
    if host in ("0.0.0.0", ""):  # a wildcard listener is reached on this host's loopback
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _api_section(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ClientConfigError(f"{path}: cannot read config: {exc.strerror or exc}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ClientConfigError(f"{path}: not a readable YAML config ({type(exc).__name__})") from None
    section = doc.get("api", {}) if isinstance(doc, dict) else {}
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ClientConfigError(f"{path}: api: expected a mapping")
    return section


def _validate(path: Path, section: dict[str, Any]) -> ApiConfig:
    try:
        return ApiConfig.model_validate(section, context={"base_dir": path.parent})
    except ValidationError as exc:
        issues = "; ".join(f"api.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ClientConfigError(f"{path}: {issues}") from None


@dataclass(frozen=True, slots=True)
class Client:
    """Requests to one daemon's API; the token, when there is one, goes in ``Authorization``."""

    url: str
    token: str | None = field(default=None, repr=False)
    timeout: float = 10.0

    @classmethod
    def from_config(cls, path: Path, *, url: str | None = None, need_token: bool = False) -> Client:
        """Build a client from a config file's ``api`` section.

        The token is sent whenever ``api.token_file`` can be read; ``need_token`` (writes) makes
        a missing or unreadable token an error instead of a request bound to be refused.

        Raises:
            ClientConfigError: naming what is wrong and what to do.
        """
        section = _api_section(path)
        try:
            cfg = _validate(path, section)
        except ClientConfigError:
            if need_token or "token_file" not in section:
                raise
            # Reading does not need the token from loopback: go on without it.
            cfg = _validate(path, {k: v for k, v in section.items() if k != "token_file"})
        token = cfg.token_file.get_secret_value() if cfg.token_file is not None else None
        if need_token and token is None:
            raise ClientConfigError(f"{path}: api.token_file is not set; silences need the API token")
        if url is not None and not url.startswith(("http://", "https://")):
            raise ClientConfigError(f"--url {url!r}: expected http://host:port or https://...")
        return cls(url=(url or base_url(cfg)).rstrip("/"), token=token)

    def request(
        self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (), body: object = None
    ) -> dict[str, Any]:
        """Send one request and return the JSON answer.

        Raises:
            ApiUnreachable: no connection (refused, timed out, unknown host).
            ApiRefused: an error status, with the API's message and problems.
        """
        url = self.url + path + (f"?{urllib.parse.urlencode(list(query))}" if query else "")
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        # No proxies: http_proxy in the environment must not send a loopback request elsewhere.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                doc = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                err = json.loads(exc.read())
            except (json.JSONDecodeError, OSError):
                err = {}
            message = str(err.get("error") or exc.reason) if isinstance(err, dict) else str(exc.reason)
            problems = err.get("problems", []) if isinstance(err, dict) else []
            raise ApiRefused(exc.code, message, [str(p) for p in problems]) from None
        except urllib.error.URLError as exc:
            raise ApiUnreachable(self.url, str(exc.reason)) from None
        except (TimeoutError, ConnectionError) as exc:
            raise ApiUnreachable(self.url, str(exc) or type(exc).__name__) from None
        except json.JSONDecodeError:
            raise ApiRefused(200, f"{url} did not answer JSON: is this netwatch's API?") from None
        if not isinstance(doc, dict):
            raise ApiRefused(200, f"{url} answered JSON that is not an object: is this netwatch's API?")
        return doc


__all__ = ["ApiRefused", "ApiUnreachable", "Client", "ClientConfigError", "base_url"]
