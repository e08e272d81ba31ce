"""Alert rules: structured conditions on one field of one measurement (no expressions, no eval).

A rule names a measurement and a numeric field from the data contract, an operator and a
threshold, and optionally a separate ``clear`` value (hysteresis: once the condition holds, it
keeps holding until the value passes ``clear``), a pending time ``for``, a ``keep_firing_for``,
a severity, labels, a scope (device kinds, sites, devices, spans) and a summary template.

A rule with ``absent_after: N`` is an absence rule instead: it holds for an entity that has sent
no sample of the measurement for N of its intervals (a silent heartbeat). It takes no op,
threshold or clear.

Two refinements of a threshold rule:

* ``delta: true`` reads how much a cumulative counter grew since the entity's previous sample
  (``netwatch.points_dropped`` rising by any amount means data is being lost). The first sample
  of an entity only sets the baseline; a counter that went down was restarted, and its new value
  is the growth.
* ``where:`` conditions on other fields of the same sample, all of which must hold for the rule
  to apply (``interface_down`` applies only to ports that are administratively up). A sample
  where one does not hold clears the condition, as an operator shutting a port ends its alert,
  but does not count as the entity having been ok. A condition on a field the sample lacks is
  not checked (an agent without ifAdminStatus still gets its ports watched).

Built-in rules (:data:`BUILTIN_RULES`) are on by default. A config entry with a built-in's name is
laid over that built-in key by key: ``{name: interface_errors, threshold: 50}`` changes one
threshold and keeps the rest, ``{name: device_silent, enabled: false}`` turns it off, and a
key set to ``null`` clears it. Any other name is a new rule and must say at least
``measurement``, ``field``, ``op`` and ``threshold`` (or ``measurement`` and ``absent_after``).

Pydantic stops at :func:`effective_rules`; the engine sees frozen :class:`Rule` objects.
"""

from __future__ import annotations

import math
import operator
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from netwatch.alerting.flap import FlapThresholds
from netwatch.alerting.model import Severity
from netwatch.configbase import Duration, Strict
from netwatch.contract import CONTRACT
from netwatch.model import Sample

Op = Literal["<", "<=", ">", ">=", "==", "!="]
RuleKind = Literal["threshold", "absent"]

_OPS: Final[dict[str, Callable[[float, float], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}

#: Placeholders a summary template may use.
PLACEHOLDERS: Final = frozenset(
    {"entity", "device", "port", "link", "site", "kind", "lessee", "rule", "severity", "value", "threshold"}
)
#: Tags that describe a check's result rather than the entity; never labels, never part of an entity.
_VOLATILE_TAGS: Final = frozenset({"reason"})
#: Tags that name the entity, most general first: device, device:port, device:radio, device:check.
_ENTITY_TAGS: Final = ("device", "port", "radio", "check")

_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class ScopeConfig(Strict):
    """Which entities a rule looks at; an empty list means all."""

    kinds: list[str] = Field(default_factory=list, description="device kinds (router, switch, wifi_ap, ...)")
    sites: list[str] = Field(default_factory=list, description="site ids (a span matches either end's site)")
    devices: list[str] = Field(default_factory=list, description="device ids")
    links: list[str] = Field(default_factory=list, description="span ids")


class WhereConfig(Strict):
    """A condition on another field of the same sample that must hold for the rule to apply."""

    field: str = Field(description="a numeric field of the rule's measurement")
    op: Op = "=="
    value: float


class RuleConfig(Strict):
    """One alert rule as written in the config (``alerts:``)."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    name: str = Field(pattern=_NAME_PATTERN, max_length=64, description="rule name; a built-in's name overrides it")
    enabled: bool = True
    measurement: str | None = Field(default=None, description="a measurement of the data contract")
    field: str | None = Field(default=None, description="a numeric field of that measurement")
    op: Op | None = None
    threshold: float | None = None
    clear: float | None = Field(
        default=None, description="hysteresis: a firing condition holds until the value passes this value"
    )
    for_: Duration = Field(default=0.0, alias="for", description="how long the condition must hold before firing")
    keep_firing_for: Duration = Field(default=0.0, description="keep firing this long after the condition clears")
    clear_checks: int = Field(
        default=2, ge=1, description="consecutive clear checks before a firing alert resolves (absence rules: 1)"
    )
    severity: Severity = "warning"
    labels: dict[str, str] = Field(default_factory=dict)
    scope: ScopeConfig = Field(default_factory=ScopeConfig)
    summary: str | None = Field(default=None, description="template: {entity} {device} {port} {link} {site} ...")
    require_ok_first: bool = Field(default=False, description="an entity that has never been ok does not fire")
    delta: bool = Field(default=False, description="read the growth of a cumulative counter since the previous sample")
    where: list[WhereConfig] = Field(
        default_factory=list, description="conditions on other fields of the sample for the rule to apply"
    )
    absent_after: int | None = Field(
        default=None, ge=1, description="absence rule: fire when no sample arrived for this many intervals"
    )
    flap_start: float = Field(default=50.0, ge=0, le=100, description="start flapping above this % state change")
    flap_stop: float = Field(default=25.0, ge=0, le=100, description="stop flapping below this % state change")

    @model_validator(mode="before")
    @classmethod
    def _layer_on_builtin(cls, data: Any) -> Any:
        """Lay an entry named like a built-in over that built-in, key by key."""
        if isinstance(data, Mapping):
            base = _BUILTIN_DATA.get(str(data.get("name")))
            if base is not None:
                merged = dict(base)
                if "for_" in data:
                    merged.pop("for", None)
                merged.update(data)
                # null clears a key: the field's own default applies (0 s for a duration).
                return {k: v for k, v in merged.items() if v is not None or k == "name"}
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        _check_rule(self)
        return self

    @property
    def kind(self) -> RuleKind:
        return "absent" if self.absent_after is not None else "threshold"


def _check_rule(cfg: RuleConfig) -> None:
    """Raise ValueError naming what is wrong with a (merged) rule."""
    builtin = cfg.name in _BUILTIN_DATA
    if cfg.measurement is None:
        hint = "" if builtin else f" (built-in rules, which need only a name: {', '.join(_BUILTIN_DATA)})"
        raise ValueError(f"rule {cfg.name!r}: 'measurement' is required{hint}")
    if cfg.measurement not in CONTRACT:
        raise ValueError(
            f"rule {cfg.name!r}: unknown measurement {cfg.measurement!r}; known: {', '.join(sorted(CONTRACT))}"
        )
    fields = CONTRACT[cfg.measurement][1]
    numeric = sorted(f for f, t in fields.items() if t != "str")
    if cfg.field is not None and cfg.field not in fields:
        raise ValueError(
            f"rule {cfg.name!r}: measurement {cfg.measurement!r} has no field {cfg.field!r}; "
            f"numeric fields: {', '.join(numeric)}"
        )
    for cond in cfg.where:
        if fields.get(cond.field) in (None, "str"):
            raise ValueError(
                f"rule {cfg.name!r}: where: measurement {cfg.measurement!r} has no numeric field {cond.field!r}; "
                f"numeric fields: {', '.join(numeric)}"
            )
        if not math.isfinite(cond.value):
            raise ValueError(f"rule {cfg.name!r}: where: {cond.field} value must be a finite number")
    if cfg.kind == "absent":
        if cfg.delta:
            raise ValueError(f"rule {cfg.name!r}: an absence rule (absent_after) takes no delta")
        extra = [k for k in ("op", "threshold", "clear") if getattr(cfg, k) is not None]
        if extra:
            raise ValueError(
                f"rule {cfg.name!r}: an absence rule (absent_after) takes no {', '.join(extra)}; "
                "set them to null or drop absent_after"
            )
    else:
        missing = [k for k in ("field", "op", "threshold") if getattr(cfg, k) is None]
        if missing:
            raise ValueError(
                f"rule {cfg.name!r}: {', '.join(repr(k) for k in missing)} required "
                "(or absent_after for an absence rule)"
            )
        assert cfg.field is not None
        assert cfg.op is not None
        assert cfg.threshold is not None
        if fields[cfg.field] == "str":
            raise ValueError(
                f"rule {cfg.name!r}: field {cfg.measurement}.{cfg.field} is a string, not a number; "
                f"numeric fields: {', '.join(numeric)}"
            )
        if not math.isfinite(cfg.threshold):
            raise ValueError(f"rule {cfg.name!r}: threshold must be a finite number")
        if cfg.clear is not None:
            _check_clear(cfg.name, cfg.op, cfg.threshold, cfg.clear)
    if not cfg.flap_stop < cfg.flap_start:
        raise ValueError(f"rule {cfg.name!r}: flap_stop ({cfg.flap_stop}) must be below flap_start ({cfg.flap_start})")
    if cfg.summary is not None:
        _check_template(cfg.name, cfg.summary)


def _check_clear(name: str, op: Op, threshold: float, clear: float) -> None:
    if op in ("==", "!="):
        raise ValueError(f"rule {name!r}: clear needs an ordering operator (<, <=, >, >=), not {op!r}")
    if not math.isfinite(clear):
        raise ValueError(f"rule {name!r}: clear must be a finite number")
    if op in ("<", "<=") and clear < threshold:
        raise ValueError(
            f"rule {name!r}: clear ({clear:g}) is on the wrong side of threshold ({threshold:g}): "
            f"with op {op!r} the value falls below the threshold to fire and must rise to clear, "
            f"so clear must be >= {threshold:g}"
        )
    if op in (">", ">=") and clear > threshold:
        raise ValueError(
            f"rule {name!r}: clear ({clear:g}) is on the wrong side of threshold ({threshold:g}): "
            f"with op {op!r} the value rises above the threshold to fire and must fall to clear, "
            f"so clear must be <= {threshold:g}"
        )


class _SafeFormatter(string.Formatter):
    """A formatter that knows only plain placeholder names: no attribute or index access."""

    def get_field(self, field_name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        if field_name not in PLACEHOLDERS:
            raise KeyError(field_name)
        return kwargs[field_name], field_name


_FORMATTER: Final = _SafeFormatter()


def _check_template(name: str, template: str) -> None:
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(f"rule {name!r}: summary is not a valid template: {exc}") from None
    for _, field_name, spec, _ in parsed:
        if field_name is None:
            continue
        if field_name not in PLACEHOLDERS:
            raise ValueError(
                f"rule {name!r}: summary has unknown placeholder {{{field_name}}}; "
                f"known: {', '.join('{' + p + '}' for p in sorted(PLACEHOLDERS))}"
            )
        if spec and "{" in spec:
            raise ValueError(f"rule {name!r}: summary placeholder {{{field_name}}} has a nested format spec")
    # Render with sample values of each type a placeholder can take, so a bad format spec
    # ("{device:.1f}", "{value:d}") is an error now, not at 2 a.m.
    for value in (-24.5, 3):
        probe: dict[str, Any] = {p: "x" for p in PLACEHOLDERS}
        probe.update(value=value, threshold=value)
        try:
            _FORMATTER.vformat(template, (), probe)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ValueError(f"rule {name!r}: summary cannot be rendered: {exc}") from None


def _tidy(value: float) -> float | int:
    """Return a value as it reads best in a summary: 0 rather than 0.0, -25.3 rather than -25.300000001."""
    if math.isfinite(value) and value == int(value):
        return int(value)
    return round(value, 3)


def entity_of(tags: Mapping[str, str]) -> str:
    """Return the entity a sample is about.

    ``device``, ``device:port``, ``device:radio``, ``device:check`` or ``link``.
    """
    if "device" in tags:
        return ":".join(tags[k] for k in _ENTITY_TAGS if k in tags)
    if "link" in tags:
        return tags["link"]
    return ":".join(v for k, v in sorted(tags.items()) if k not in _VOLATILE_TAGS) or "-"


@dataclass(frozen=True, slots=True)
class Scope:
    """A compiled scope: tag values that must match (empty set = any)."""

    kinds: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()
    devices: frozenset[str] = frozenset()
    links: frozenset[str] = frozenset()

    def includes(self, tags: Mapping[str, str]) -> bool:
        """Return whether an entity with these tags is in scope (a tag the scope filters on must be present)."""
        if self.kinds and tags.get("kind") not in self.kinds:
            return False
        if self.sites and not ({tags.get("site"), tags.get("site_a"), tags.get("site_b")} & self.sites):
            return False
        if self.devices and tags.get("device") not in self.devices:
            return False
        return not (self.links and tags.get("link") not in self.links)


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled rule, as the engine uses it."""

    name: str
    measurement: str
    field: str | None
    op: Op | None
    threshold: float | None
    clear: float | None
    for_ns: int
    keep_firing_for_ns: int
    clear_checks: int
    severity: Severity
    labels: Mapping[str, str]
    scope: Scope
    summary: str
    require_ok_first: bool
    absent_after: int | None
    flap: FlapThresholds
    delta: bool = False
    where: tuple[tuple[str, Op, float], ...] = ()

    @property
    def kind(self) -> RuleKind:
        return "absent" if self.absent_after is not None else "threshold"

    @classmethod
    def build(cls, cfg: RuleConfig) -> Rule:
        assert cfg.measurement is not None  # checked at load
        return cls(
            name=cfg.name,
            measurement=cfg.measurement,
            field=cfg.field,
            op=cfg.op,
            threshold=cfg.threshold,
            clear=cfg.clear,
            for_ns=round(cfg.for_ * 1e9),
            keep_firing_for_ns=round(cfg.keep_firing_for * 1e9),
            # An absence resolves on the first sample that arrives: data is back.
            clear_checks=1 if cfg.kind == "absent" else cfg.clear_checks,
            severity=cfg.severity,
            labels=dict(cfg.labels),
            scope=Scope(
                kinds=frozenset(cfg.scope.kinds),
                sites=frozenset(cfg.scope.sites),
                devices=frozenset(cfg.scope.devices),
                links=frozenset(cfg.scope.links),
            ),
            summary=cfg.summary if cfg.summary is not None else _default_summary(cfg),
            require_ok_first=cfg.require_ok_first,
            absent_after=cfg.absent_after,
            flap=FlapThresholds(start=cfg.flap_start, stop=cfg.flap_stop),
            delta=cfg.delta,
            where=tuple((w.field, w.op, w.value) for w in cfg.where),
        )

    def matches(self, sample: Sample, tags: Mapping[str, str] | None = None) -> bool:
        """Return whether this rule looks at ``sample`` (measurement and scope; ``tags`` may add e.g. kind)."""
        if sample.measurement != self.measurement:
            return False
        if self.field is not None and self.field not in sample.fields:
            return False
        return self.scope.includes(sample.tags if tags is None else tags)

    def value(self, sample: Sample) -> float | None:
        """Return the numeric value this rule reads from ``sample``, or None if it carries none."""
        if self.field is None:
            return None
        raw = sample.fields.get(self.field)
        if isinstance(raw, bool | int | float):
            value = float(raw)
            return value if not math.isnan(value) else None
        return None

    def applies(self, sample: Sample) -> bool:
        """Return whether every ``where`` condition holds on ``sample`` (one on a missing field is skipped)."""
        for name, op, wanted in self.where:
            raw = sample.fields.get(name)
            if isinstance(raw, bool | int | float) and not _OPS[op](float(raw), wanted):
                return False
        return True

    @staticmethod
    def entity(sample: Sample) -> str:
        """Return the entity ``sample`` is about (see :func:`entity_of`)."""
        return entity_of(sample.tags)

    def breached(self, value: float) -> bool:
        """Return whether ``value`` meets the firing condition (``value op threshold``)."""
        assert self.op is not None
        assert self.threshold is not None
        return _OPS[self.op](value, self.threshold)

    def still_breached(self, value: float) -> bool:
        """Return whether a condition that holds keeps holding: it has not passed ``clear``."""
        assert self.op is not None
        assert self.threshold is not None
        return _OPS[self.op](value, self.threshold if self.clear is None else self.clear)

    def labels_for(self, tags: Mapping[str, str]) -> dict[str, str]:
        """Return the labels of an alert on an entity with ``tags``: rule labels, tags, rule and severity."""
        labels = dict(self.labels)
        labels.update((k, v) for k, v in tags.items() if k not in _VOLATILE_TAGS)
        labels["rule"] = self.name
        labels["severity"] = self.severity
        return labels

    def render(self, *, entity: str, tags: Mapping[str, str], value: float | None) -> str:
        """Return the summary for an entity; never raises (a template that cannot render is shown raw)."""
        threshold = self.threshold if self.threshold is not None else float(self.absent_after or 0)
        values: dict[str, Any] = {
            "entity": entity,
            "device": tags.get("device", ""),
            "port": tags.get("port", ""),
            "link": tags.get("link", ""),
            "site": tags.get("site") or tags.get("site_a", ""),
            "kind": tags.get("kind", ""),
            "lessee": tags.get("lessee", ""),
            "rule": self.name,
            "severity": self.severity,
            "value": _tidy(value) if value is not None else "?",
            "threshold": _tidy(threshold),
        }
        try:
            return _FORMATTER.vformat(self.summary, (), values)
        except (ValueError, TypeError, KeyError, IndexError):
            return self.summary


def _default_summary(cfg: RuleConfig) -> str:
    if cfg.kind == "absent":
        return f"{{entity}}: no {cfg.measurement} data for {{value}} s"
    return f"{{entity}}: {cfg.measurement}.{cfg.field} is {{value}} ({cfg.op} {{threshold}})"


#: The built-in rules, as config data (the same keys a user writes).
_BUILTIN_DATA: Final[dict[str, dict[str, Any]]] = {
    "device_down": {
        "name": "device_down",
        "measurement": "device",
        "field": "up",
        "op": "==",
        "threshold": 0,
        "severity": "critical",
        "summary": "{device} is down ({site})",
    },
    "span_down": {
        "name": "span_down",
        "measurement": "link",
        "field": "up",
        "op": "==",
        "threshold": 0,
        "severity": "critical",
        "summary": "span {link} is down",
    },
    "interface_down": {
        "name": "interface_down",
        "measurement": "interface",
        "field": "oper_up",
        "op": "==",
        "threshold": 0,
        "require_ok_first": True,
        # A port an operator shut is not a fault; shutting one that was alerting ends the alert.
        "where": [{"field": "admin_up", "op": "==", "value": 1}],
        "severity": "warning",
        "summary": "{device} port {port} is down",
    },
    "optics_rx_low": {
        "name": "optics_rx_low",
        "measurement": "optics",
        "field": "rx_dbm",
        "op": "<",
        "threshold": -24,
        "clear": -22,
        "for": "2m",
        "severity": "warning",
        "summary": "{device} port {port}: optical receive power {value} dBm is below {threshold} dBm",
    },
    "interface_errors": {
        "name": "interface_errors",
        "measurement": "interface",
        "field": "in_errors_ps",
        "op": ">",
        "threshold": 10,
        "for": "5m",
        "severity": "warning",
        "summary": "{device} port {port}: {value} input errors/s (threshold {threshold})",
    },
    "device_silent": {
        "name": "device_silent",
        "measurement": "device",
        "absent_after": 3,
        "severity": "warning",
        "summary": "{device}: no data for {value} s ({site})",
    },
    "device_rebooted": {
        "name": "device_rebooted",
        "measurement": "system",
        "field": "rebooted",
        "op": "==",
        "threshold": 1,
        "keep_firing_for": "10m",
        "severity": "info",
        "summary": "{device} rebooted",
    },
    # A park's public WiFi as users see it (portal and APs, see netwatch.parkwifi). Held, like a
    # device, while the park is only unreachable behind another fault or in maintenance.
    "park_wifi_down": {
        "name": "park_wifi_down",
        "measurement": "wifi_service",
        "field": "up",
        "op": "==",
        "threshold": 0,
        "for": "1m",
        "severity": "critical",
        "summary": "public WiFi at {site} is down",
    },
    # netwatch watching itself: its counters (measurement netwatch) are cumulative, hence delta.
    # keep_firing_for turns a burst of drops into one incident rather than one per health report.
    "points_dropped": {
        "name": "points_dropped",
        "measurement": "netwatch",
        "field": "points_dropped",
        "delta": True,
        "op": ">",
        "threshold": 0,
        "keep_firing_for": "15m",
        "severity": "critical",
        "summary": "netwatch lost {value} measurements since its last report "
        "(spool cap, full disk or unencodable data; see the log)",
    },
    "notifications_dropped": {
        "name": "notifications_dropped",
        "measurement": "netwatch",
        "field": "outbox_dropped",
        "delta": True,
        "op": ">",
        "threshold": 0,
        "keep_firing_for": "1h",
        "severity": "critical",
        "summary": "netwatch dropped {value} alert notifications "
        "(a receiver refused them or they expired; see the log)",
    },
    "influxdb_write_failing": {
        "name": "influxdb_write_failing",
        "measurement": "netwatch",
        "field": "write_errors",
        "delta": True,
        "op": ">",
        "threshold": 0,
        "for": "5m",
        "severity": "warning",
        "summary": "netwatch cannot write to InfluxDB ({value} failed writes since its last report); "
        "measurements are kept in the spool",
    },
    # Access panels (MQTT ingest). The ingest reports a panel offline only after mqtt.missed
    # cadences without a heartbeat, and reports nothing while the broker is away, so a broker
    # outage is one mqtt_broker_down, not a page per panel.
    "panel_silent": {
        "name": "panel_silent",
        "measurement": "panel",
        "field": "online",
        "op": "==",
        "threshold": 0,
        "severity": "warning",
        "summary": "access panel {device} sends no heartbeats ({site})",
    },
    # An alarm event (door forced, tamper by default: mqtt.alarm_events) is an instant; the panel
    # sample carries it as alarms > 0 until the next cadence, and keep_firing_for holds the
    # incident open so a door forced twice in ten minutes is one page, not two.
    "panel_alarm": {
        "name": "panel_alarm",
        "measurement": "panel",
        "field": "alarms",
        "op": ">",
        "threshold": 0,
        "keep_firing_for": "10m",
        "severity": "critical",
        "summary": "access panel {device}: {value} alarm event(s), door forced or tamper ({site})",
    },
    "mqtt_broker_down": {
        "name": "mqtt_broker_down",
        "measurement": "netwatch",
        "field": "broker_connected",
        "op": "==",
        "threshold": 0,
        "for": "1m",
        "severity": "critical",
        "summary": "netwatch cannot reach the MQTT broker: access panel state is unknown",
    },
}

#: The built-in rules, validated (on unless the config turns them off).
BUILTIN_RULES: Final[tuple[RuleConfig, ...]] = tuple(RuleConfig.model_validate(d) for d in _BUILTIN_DATA.values())


def check_unique(rules: Sequence[RuleConfig]) -> Sequence[RuleConfig]:
    """Raise ValueError if two config entries share a name (usable as a pydantic AfterValidator)."""
    seen: set[str] = set()
    for rule in rules:
        if rule.name in seen:
            raise ValueError(f"two alert rules are named {rule.name!r}; names must be unique")
        seen.add(rule.name)
    return rules


def effective_rules(user_rules: Sequence[RuleConfig] = ()) -> list[Rule]:
    """Return the compiled rules in force: built-ins (overridden by same-named entries), then the rest.

    Disabled rules are left out. Raises ValueError on duplicate names.
    """
    check_unique(user_rules)
    by_name = {r.name: r for r in user_rules}
    configs = [by_name.pop(b.name, b) for b in BUILTIN_RULES]
    configs.extend(by_name.values())
    return [Rule.build(c) for c in configs if c.enabled]
