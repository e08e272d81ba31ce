"""Building blocks for config classes: strict models, durations, secrets read from files.

Config classes live beside the code that uses them (``probes/snmp.py`` holds ``SnmpConfig``);
they all build on what is here, so every config error reads the same way.
"""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, SecretStr, ValidationInfo, WithJsonSchema

M = TypeVar("M", bound=BaseModel)


class Strict(BaseModel):
    """Base for every config class: unknown keys are errors, values are frozen after load."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: object) -> float:
    """Turn ``30s``, ``5m``, ``1h30m``, ``250ms`` or a bare number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text:
            raise ValueError("empty duration; write e.g. 30s, 5m or 1h")
        pos = 0
        seconds = 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_S[match.group(2)]
            pos = match.end()
        if pos != len(text):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"invalid duration {value!r}; write e.g. 30s, 5m, 1h30m or 250ms") from None
    else:
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 1h")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


#: Seconds, written in YAML as ``30s``, ``5m``, ``1h`` or a number.
Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"},
            ],
            "description": "duration: seconds, or e.g. 30s, 5m, 1h30m",
        }
    ),
]

#: Keys that hold a secret; the config must name a file for them instead (``<key>_file``).
SECRET_KEYS = frozenset({"community", "auth_key", "priv_key", "password", "token", "secret", "routing_key"})


def _read_secret(value: object, info: ValidationInfo) -> SecretStr:
    """Read a secret from the file a ``*_file`` key names.

    A relative path is looked up in ``$CREDENTIALS_DIRECTORY`` when systemd provides one
    (``LoadCredential=community:/etc/netwatch/community`` makes ``community_file: community``
    work), otherwise beside the config file. The error names the path, never the content.
    """
    if isinstance(value, SecretStr):
        return value
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError("expected the path of a file holding the secret")
    path = Path(str(value)).expanduser()
    if not path.is_absolute():
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        # systemd credential names cannot hold "/", so "credentials/snmp-community" is also
        # looked up as "snmp-community" there.
        candidates = [Path(creds) / path, Path(creds) / path.name] if creds else []
        candidates.append(_base_dir(info) / path)
        path = next((c for c in candidates if c.exists()), candidates[-1])
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"secret file {str(path)!r} does not exist") from None
    except PermissionError:
        raise ValueError(f"secret file {str(path)!r} is not readable by this user") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"secret file {str(path)!r} cannot be read ({type(exc).__name__})") from None
    # A trailing newline from `echo secret > file` is not part of the secret.
    secret = text.rstrip("\r\n")
    if not secret:
        raise ValueError(f"secret file {str(path)!r} is empty")
    return SecretStr(secret)


def _base_dir(info: ValidationInfo) -> Path:
    context = info.context if isinstance(info.context, dict) else {}
    return Path(context.get("base_dir", "."))


def _config_file(value: object, info: ValidationInfo) -> str:
    """Resolve a file the config names (a CA bundle, say) beside the config; it must be readable."""
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ValueError("expected a file path")
    path = Path(str(value)).expanduser()
    if not path.is_absolute():
        path = _base_dir(info) / path
    if not path.is_file():
        raise ValueError(f"file {str(path)!r} does not exist")
    if not os.access(path, os.R_OK):
        raise ValueError(f"file {str(path)!r} is not readable by this user")
    return str(path)


#: A file the config names, resolved beside the config file and checked at load.
ConfigFile = Annotated[str, BeforeValidator(_config_file), WithJsonSchema({"type": "string"})]


def _ca_bundle(value: object, info: ValidationInfo) -> str:
    """A CA bundle must load as one at load time: found broken only when a connection is made, it
    would stop a receiver or the MQTT ingest, and a reload would not get the chance to refuse it."""
    path = _config_file(value, info)
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ValueError(f"file {path!r} is not a PEM CA bundle ({getattr(exc, 'reason', None) or exc})") from None
    return path


#: A CA bundle (PEM), resolved like a ConfigFile and loaded once at load to prove it is one.
CaFile = Annotated[str, BeforeValidator(_ca_bundle), WithJsonSchema({"type": "string"})]

#: A secret read at load time from the file this key names; shown as ``**********``.
SecretFile = Annotated[
    SecretStr,
    BeforeValidator(_read_secret),
    WithJsonSchema({"type": "string", "description": "path of a file holding the secret"}),
]


def reveal(secret: SecretStr | None) -> str | None:
    """Return a secret's text for the one place that must send it on the wire."""
    return None if secret is None else secret.get_secret_value()


def layer(base: M, override: BaseModel | None) -> M:
    """Return ``base`` with the keys ``override`` set explicitly laid over it.

    Config values come in layers (global defaults, defaults for a device kind, the device); only
    keys a layer actually sets win, so an unset key never hides a value from a layer below.
    ``override`` may be another class that shares keys with ``base`` (``snmp:`` under ``wifi:``);
    keys ``base`` does not have are left out.
    """
    if override is None:
        return base
    update = {name: getattr(override, name) for name in override.model_fields_set if name in type(base).model_fields}
    return base.model_copy(update=update)
