"""The typed config: pydantic v2 models, loading from YAML, and the cross-checks.

Every error names the file, the line and the key path, and all errors are reported at once:
pydantic collects the per-field ones, :func:`cross_check` the ones between entries (unknown site
or parent, duplicate ids, parent cycles), and the inventory the ones that need merged settings.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import socket
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    create_model,
)

from netwatch.alerting.maintenance import MaintenanceConfig
from netwatch.alerting.receivers import ReceiverConfig
from netwatch.alerting.routing import RouteConfig
from netwatch.alerting.rules import RuleConfig, check_unique
from netwatch.api.health import ApiConfig
from netwatch.configbase import SECRET_KEYS, Duration, Strict
from netwatch.ingest.mqttconfig import MqttConfig, PanelConfig
from netwatch.ingest.traps import TrapsConfig
from netwatch.probes import REGISTRY
from netwatch.sink.influx import InfluxConfig
from netwatch.sink.spool import SpoolConfig
from netwatch.yamlpos import KeyPath, line_for, load_with_lines

DeviceKind = Literal["router", "switch", "wifi_ap", "access_panel", "camera", "server", "other"]
SiteKind = Literal["facility", "park", "community_centre", "yard", "datacentre", "hub", "other"]

#: Checks a device of each kind gets when neither its kind defaults nor the device name them.
DEFAULT_CHECKS: dict[str, tuple[str, ...]] = {
    "router": ("ping", "snmp"),
    "switch": ("ping", "snmp"),
    "wifi_ap": ("ping",),
    "access_panel": ("ping",),
    "camera": ("ping",),
    "server": ("ping",),
    "other": ("ping",),
}

Id = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", max_length=64),
    WithJsonSchema({"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$", "maxLength": 64}),
]

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9-]{1,63})*\.?$")


def _known_check(name: str) -> str:
    if name not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"unknown check {name!r}{_suggest(name, REGISTRY)}; known checks: {known}")
    return name


def _address(value: str) -> str:
    value = value.strip()
    try:
        ipaddress.ip_address(value)
    except ValueError:
        # "10.20.51" or "10.0.0.300" would be taken as a host name, and the resolver turns the
        # first into 10.20.0.51: a different device. Dotted numbers must be a valid IPv4 address.
        if re.fullmatch(r"[0-9.]+", value):
            raise ValueError(f"{value!r} is not a valid IPv4 address") from None
        if not _HOSTNAME.match(value):
            raise ValueError(f"{value!r} is neither an IP address nor a host name") from None
    return value


CheckName = Annotated[str, AfterValidator(_known_check), WithJsonSchema({"enum": sorted(REGISTRY)})]
Address = Annotated[str, AfterValidator(_address)]
Interval = Annotated[Duration, Field(ge=1.0)]
Timeout = Annotated[Duration, Field(gt=0.0)]


class Location(Strict):
    """Where a site is, for the Grafana map."""

    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class SiteConfig(Strict):
    """A city facility, park, community centre or yard."""

    id: Id
    name: str
    kind: SiteKind = "facility"
    location: Location | None = None
    address: str | None = Field(default=None, description="street address, for people")


class LinkEnd(Strict):
    """One end of a fiber span: a device and the port the fiber lands on."""

    device: Id
    port: str = Field(min_length=1)


class LinkConfig(Strict):
    """A fiber span between two device ports."""

    id: Id
    name: str | None = None
    a: LinkEnd
    b: LinkEnd
    length_km: float | None = Field(default=None, gt=0, le=1000)
    lessee: Id | None = Field(default=None, description="institution or carrier leasing the span")
    sla: float | None = Field(default=None, gt=0, le=100, description="availability target, percent")


class SchedulerConfig(Strict):
    """How checks are run."""

    max_in_flight: int = Field(default=256, ge=1, le=100_000, description="checks running at once")
    stats_interval: Interval = Field(default=30.0, description="how often netwatch writes its own health")


class LogConfig(Strict):
    """Logging; JSON for journald when stdout is not a terminal."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class _CommonSettings(Strict):
    """Settings a device inherits from ``defaults`` and ``defaults.kinds.<kind>``."""

    checks: list[CheckName] | None = Field(default=None, description="checks to run; [] = push only")
    interval: Interval | None = None
    timeout: Timeout | None = Field(default=None, description="longest one check may take")


class _DefaultsBase(Strict):
    interval: Interval = 30.0
    timeout: Timeout = 10.0


class _DeviceBase(_CommonSettings):
    id: Id
    name: str | None = None
    site: Id
    kind: DeviceKind
    address: Address
    parents: list[Id] = Field(default_factory=list, description="upstream devices (several = redundant)")
    ports: list[str] = Field(default_factory=list, description="ports to poll besides the span ends")
    panel: PanelConfig | None = Field(default=None, description="access panel over MQTT (see mqtt:)")


def _per_kind_fields(*, with_defaults: bool) -> dict[str, Any]:
    # One optional settings block per registered probe kind (``ping:``, ``snmp:`` ...).
    if with_defaults:
        return {name: (kind.config, Field(default_factory=kind.config)) for name, kind in REGISTRY.items()}
    return {name: (kind.config | None, None) for name, kind in REGISTRY.items()}


KindDefaults: type[_CommonSettings] = create_model(
    "KindDefaults", __base__=_CommonSettings, **_per_kind_fields(with_defaults=False)
)
_DefaultsNoKinds: type[_DefaultsBase] = create_model(
    "DefaultsBase", __base__=_DefaultsBase, **_per_kind_fields(with_defaults=True)
)
Defaults: type[_DefaultsBase] = create_model(
    "Defaults",
    __base__=_DefaultsNoKinds,
    kinds=(dict[DeviceKind, KindDefaults], Field(default_factory=dict)),
)
DeviceConfig: type[_DeviceBase] = create_model(
    "DeviceConfig", __base__=_DeviceBase, **_per_kind_fields(with_defaults=False)
)


def _default_instance() -> str:
    name = re.sub(r"[^A-Za-z0-9_.:-]", "-", socket.gethostname()) or "netwatch"
    return name[:64]


class Config(Strict):
    """The whole config file."""

    instance: Id = Field(default_factory=_default_instance, description="name of this netwatch")
    state_dir: Path = Path("/var/lib/netwatch")
    influxdb: InfluxConfig | None = Field(default=None, description="absent: points are only kept in the spool")
    spool: SpoolConfig = Field(default_factory=SpoolConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    mqtt: MqttConfig | None = Field(default=None, description="broker for access panels; absent: no MQTT")
    traps: TrapsConfig | None = Field(default=None, description="SNMP trap receiver; absent: none")
    log: LogConfig = Field(default_factory=LogConfig)
    defaults: Defaults = Field(default_factory=Defaults)
    alerts: Annotated[list[RuleConfig], AfterValidator(check_unique)] = Field(
        default_factory=list, description="rules that add to or override the built-in ones (by name)"
    )
    receivers: list[ReceiverConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list, description="first match wins unless continue")
    maintenance: list[MaintenanceConfig] = Field(default_factory=list)
    sites: list[SiteConfig] = Field(default_factory=list)
    devices: list[DeviceConfig] = Field(default_factory=list)
    links: list[LinkConfig] = Field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One thing wrong with a config file, placed by line and key path."""

    file: str
    line: int
    path: KeyPath
    message: str

    def __str__(self) -> str:
        where = format_path(self.path)
        return (
            f"{self.file}:{self.line}: {where}: {self.message}" if where else f"{self.file}:{self.line}: {self.message}"
        )


class ConfigError(Exception):
    """A config file that cannot be used; carries every issue found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.file, i.line, format_path(i.path)))
        super().__init__("\n".join(str(i) for i in self.issues))


def format_path(path: Iterable[str | int]) -> str:
    """Render a key path as ``devices[3].snmp.community_file``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _annotation_model(annotation: Any) -> Any:
    """Strip Optional / Annotated / list / dict to the model class inside, if any."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return None
        elif origin in (list, tuple, set, frozenset):
            annotation = get_args(annotation)[0]
        elif origin is dict:
            annotation = get_args(annotation)[1]
        else:
            return annotation


def _model_at(path: KeyPath) -> type[BaseModel] | None:
    """Return the model class that holds the keys at ``path`` (for 'did you mean')."""
    model: Any = Config
    for part in path:
        if isinstance(part, int):
            continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            if part in model.model_fields:
                model = _annotation_model(model.model_fields[part].annotation)
            else:
                # a dict key (e.g. a device kind under defaults.kinds): same model continues
                continue
        else:
            return None
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unknown_key_message(path: KeyPath) -> str:
    key = str(path[-1])
    if key in SECRET_KEYS:
        return f"unknown key {key!r}: secrets are never written in the config; use {key}_file"
    model = _model_at(path[:-1])
    if model is not None:
        hint = difflib.get_close_matches(key, list(model.model_fields), n=1, cutoff=0.6)
        if hint:
            return f"unknown key {key!r} (did you mean {hint[0]!r}?)"
        return f"unknown key {key!r}; allowed here: {', '.join(model.model_fields)}"
    return f"unknown key {key!r}"


def _issues_from_validation(exc: ValidationError, file: str, lines: dict[KeyPath, int]) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        path: KeyPath = tuple(p for p in err["loc"] if p != "[key]")
        kind = err["type"]
        if kind == "extra_forbidden":
            message = _unknown_key_message(path)
        elif kind == "missing":
            message = "required key is missing"
        else:
            message = str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
            if kind in ("dict_type", "model_type", "list_type"):
                message = f"{message} (got {type(err.get('input')).__name__})"
        issues.append(ConfigIssue(file, line_for(lines, path), path, message))
    return issues


# --------------------------------------------------------------------------------------------
# Cross-checks between entries. They read the raw data so that they run even when some entries
# failed validation: a typo in one device must not hide a cycle among the others.


def _entries(raw: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
    items = raw.get(key)
    if not isinstance(items, list):
        return []
    return [(i, item) for i, item in enumerate(items) if isinstance(item, Mapping)]


def cross_check(raw: Mapping[str, Any]) -> list[tuple[KeyPath, str]]:
    """Return (key path, message) for every reference between entries that does not hold."""
    problems: list[tuple[KeyPath, str]] = []

    def ids(section: str) -> dict[str, int]:
        seen: dict[str, int] = {}
        for i, item in _entries(raw, section):
            ident = item.get("id")
            if not isinstance(ident, str):
                continue
            if ident in seen:
                problems.append(
                    ((section, i, "id"), f"duplicate id {ident!r} (first used at {section}[{seen[ident]}])")
                )
            else:
                seen[ident] = i
        return seen

    sites = ids("sites")
    devices = ids("devices")
    ids("links")

    for i, dev in _entries(raw, "devices"):
        site = dev.get("site")
        if isinstance(site, str) and site not in sites:
            problems.append((("devices", i, "site"), f"unknown site {site!r}{_suggest(site, sites)}"))
        parents = dev.get("parents")
        if isinstance(parents, list):
            for j, parent in enumerate(parents):
                if not isinstance(parent, str):
                    continue
                if parent == dev.get("id"):
                    problems.append((("devices", i, "parents", j), "a device cannot be its own parent"))
                elif parent not in devices:
                    problems.append(
                        (
                            ("devices", i, "parents", j),
                            f"unknown parent device {parent!r}{_suggest(parent, devices)}",
                        )
                    )

    # Parent cycles: a depth-first search over the parent graph, reporting each cycle once.
    graph: dict[str, list[str]] = {}
    for _, dev in _entries(raw, "devices"):
        ident = dev.get("id")
        parents = dev.get("parents")
        if isinstance(ident, str) and isinstance(parents, list):
            graph[ident] = [p for p in parents if isinstance(p, str) and p in devices and p != ident]
    reported: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for parent in graph.get(node, []):
            if state.get(parent) == 1:
                cycle = [*stack[stack.index(parent) :], parent]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    problems.append((("devices", devices[node], "parents"), "parent cycle: " + " -> ".join(cycle)))
            elif state.get(parent) is None:
                visit(parent, stack)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])

    receivers: dict[str, int] = {}
    for i, rec in _entries(raw, "receivers"):
        name = rec.get("name")
        if isinstance(name, str):
            if name in receivers:
                problems.append((("receivers", i, "name"), f"duplicate receiver name {name!r}"))
            receivers.setdefault(name, i)
    for i, route in _entries(raw, "routes"):
        names = route.get("receivers")
        if isinstance(names, list):
            for j, name in enumerate(names):
                if isinstance(name, str) and name not in receivers:
                    problems.append(
                        (("routes", i, "receivers", j), f"unknown receiver {name!r}{_suggest(name, receivers)}")
                    )
    links = ids_of(raw, "links")
    for i, window in _entries(raw, "maintenance"):
        scope = window.get("scope")
        if isinstance(scope, Mapping):
            for kind, known in (("site", sites), ("device", devices), ("link", links)):
                ident = scope.get(kind)
                if isinstance(ident, str) and ident not in known:
                    problems.append(
                        (("maintenance", i, "scope", kind), f"unknown {kind} {ident!r}{_suggest(ident, known)}")
                    )

    used_ports: dict[tuple[str, str], str] = {}
    for i, link in _entries(raw, "links"):
        ends = []
        for side in ("a", "b"):
            end = link.get(side)
            if not isinstance(end, Mapping):
                continue
            device, port = end.get("device"), end.get("port")
            if isinstance(device, str) and device not in devices:
                problems.append((("links", i, side, "device"), f"unknown device {device!r}{_suggest(device, devices)}"))
            if isinstance(device, str) and isinstance(port, str):
                ends.append((device, port))
                other = used_ports.get((device, port))
                if other is not None and other != link.get("id"):
                    problems.append(((("links", i, side, "port")), f"port {device}:{port} already ends span {other!r}"))
                used_ports[(device, port)] = str(link.get("id"))
        if len(ends) == 2 and ends[0][0] == ends[1][0]:
            problems.append((("links", i, "b", "device"), "a span must join two different devices"))
    return problems


def ids_of(raw: Mapping[str, Any], section: str) -> set[str]:
    return {item["id"] for _, item in _entries(raw, section) if isinstance(item.get("id"), str)}


def _suggest(value: str, known: Iterable[str]) -> str:
    hint = difflib.get_close_matches(value, list(known), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


# --------------------------------------------------------------------------------------------
# Loading


@dataclass(frozen=True)
class Loaded:
    """A config that passed every check, with the inventory built from it."""

    path: Path
    config: Config
    inventory: Any  # netwatch.inventory.Inventory (imported lazily: inventory imports this module)


def load_config(path: str | Path) -> Loaded:
    """Read, validate and cross-check a config file; raise ConfigError with every issue."""
    from netwatch.inventory import build_inventory

    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(file, 0, (), f"cannot read config: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigIssue(file, 0, (), "config is not UTF-8 text")]) from None

    raw, lines, yaml_problems = load_with_lines(text)
    issues = [ConfigIssue(file, p.line, p.path, p.message) for p in yaml_problems]
    if raw is None and not issues:
        issues.append(ConfigIssue(file, 1, (), "config file is empty"))
    if raw is not None and not isinstance(raw, dict):
        issues.append(ConfigIssue(file, 1, (), f"the top level must be a mapping, not {type(raw).__name__}"))
    if issues and not isinstance(raw, dict):
        raise ConfigError(issues)
    assert isinstance(raw, dict)

    config: Config | None = None
    try:
        config = Config.model_validate(raw, context={"base_dir": path.parent})
    except ValidationError as exc:
        issues.extend(_issues_from_validation(exc, file, lines))
    for key_path, message in cross_check(raw):
        issues.append(ConfigIssue(file, line_for(lines, key_path), key_path, message))
    if issues or config is None:
        raise ConfigError(issues)

    inventory, problems = build_inventory(config)
    issues.extend(ConfigIssue(file, line_for(lines, p), p, m) for p, m in problems)
    if issues:
        raise ConfigError(issues)
    return Loaded(path=path, config=config, inventory=inventory)


def config_schema() -> dict[str, Any]:
    """Return the JSON Schema of the config file, for editors."""
    schema = Config.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "netwatch config"
    return schema
