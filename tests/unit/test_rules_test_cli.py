"""`netwatch rules test`: what an operator sees when replaying series through the rules."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netwatch.cli import main
from netwatch.model import Sample
from netwatch.sink.lineproto import LineEncoder

ROOT = Path(__file__).parent.parent.parent
S = 1_000_000_000

CONFIG = """\
sites: [{id: park, name: Park}, {id: hq, name: HQ}]
devices:
  - {id: r1, site: hq, kind: router, address: 10.0.0.1, checks: [ping], interval: 10s, timeout: 5s}
  - {id: sw-a, site: park, kind: switch, address: 10.0.0.2, checks: [ping], interval: 10s, timeout: 5s,
     parents: [r1], ports: [xe-0/0/1]}
"""

FADE = """\
interval: 10s
start: 2026-01-01T00:00:00Z
series:
  - measurement: optics
    tags: {device: sw-a, port: xe-0/0/1}
    field: rx_dbm
    values: "-20x5 -24.5x20 -21x10"
"""
EXPECT_FADE = """\
expect:
  - {rule: optics_rx_low, entity: "sw-a:xe-0/0/1", to: firing, at: 2m50s}
  - {rule: optics_rx_low, entity: "sw-a:xe-0/0/1", to: resolved, at: 4m20s}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "netwatch.yaml"
    path.write_text(CONFIG)
    return path


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def rules_test(config: Path, *args: str) -> int:
    return main(["rules", "test", "-c", str(config), *args])


def test_fade_fires_once_and_resolves(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fade below -24 dBm for more than `for: 2m` prints one firing at the right time and one
    resolve after clear_checks values past -22, and the footer counts two notices."""
    code = rules_test(config, write(tmp_path, "fade.yaml", FADE))
    out, err = capsys.readouterr()
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["2026-01-01T00:02:50Z", "+2m50s", "optics_rx_low", "sw-a:xe-0/0/1", "firing"]
    assert "-24.5 dBm is below -24 dBm" in lines[0]
    assert lines[1].split()[:5] == ["2026-01-01T00:04:20Z", "+4m20s", "optics_rx_low", "sw-a:xe-0/0/1", "resolved"]
    assert "-- notices: 2" in out
    assert "optics_rx_low  1 firing, 1 resolved" in out
    assert "pending" not in out
    assert err == ""


def test_expectations_met(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert rules_test(config, write(tmp_path, "fade.yaml", FADE + EXPECT_FADE)) == 0
    assert "expectations met (2 transitions)" in capsys.readouterr().out


def test_expectation_mismatch_exits_1_with_a_readable_diff(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong time is a line the replay lacks (-) and one it has (+); what matched is context."""
    wrong = EXPECT_FADE.replace("at: 2m50s", "at: 2m40s")
    code = rules_test(config, write(tmp_path, "fade.yaml", FADE + wrong))
    out = capsys.readouterr().out
    assert code == 1
    diff = out[out.index("expectations not met") :].splitlines()
    assert diff[0].endswith("1 expected transition(s) did not happen, 1 happened unexpectedly")
    assert [line.split() for line in diff[1:]] == [
        ["---", "expected"],
        ["+++", "replayed"],
        ["-", "+2m40s", "optics_rx_low", "sw-a:xe-0/0/1", "firing"],
        ["+", "+2m50s", "optics_rx_low", "sw-a:xe-0/0/1", "firing"],
        ["+4m20s", "optics_rx_low", "sw-a:xe-0/0/1", "resolved"],
    ]


def test_outage_shorter_than_for_prints_nothing(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dip shorter than `for` prints no transition; the footer says it went pending, and
    --pending shows when; `expect: []` (nothing may fire) is met."""
    short = FADE.replace("-24.5x20", "-24.5x6") + "expect: []\n"
    path = write(tmp_path, "dip.yaml", short)
    assert rules_test(config, path) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "no notices"
    assert "-- notices: none" in out
    assert "-- went pending but never fired: optics_rx_low sw-a:xe-0/0/1 at +50s (--pending shows them)" in out
    assert rules_test(config, path, "--pending") == 0
    assert capsys.readouterr().out.splitlines()[0].split()[1:5] == [
        "+50s",
        "optics_rx_low",
        "sw-a:xe-0/0/1",
        "pending",
    ]


def test_port_toggling_every_poll_is_one_flapping_notice(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port toggling at every poll for 10 minutes: a firing and a flapping notice while it
    toggles (not 30 pages), then flapping_stopped and resolved once it settles."""
    flap = (
        "interval: 10s\nseries:\n"
        "  - measurement: interface\n"
        "    tags: {device: sw-a, port: xe-0/0/1}\n"
        "    field: oper_up\n"
        f"    values: '1x5 {'0 1 ' * 30} 1x30'\n"
    )
    assert rules_test(config, write(tmp_path, "flap.yaml", flap)) == 0
    out = capsys.readouterr().out
    tos = [line.split()[4] for line in out.splitlines() if not line.startswith(("--", " "))]
    assert tos == ["firing", "flapping", "flapping_stopped", "resolved"]
    assert "interface_down  1 firing, 1 resolved, 1 flapping, 1 flapping_stopped" in out


def test_line_protocol_recorded_from_the_daemons_encoder(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Points as netwatch writes them (the sink's encoder), in an export's order (by series, not
    time) and with its preamble, replay like the same values written as a series."""
    t0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z, the series file's start
    values = [-20.0] * 5 + [-24.5] * 20 + [-21.0] * 10
    tags = {"device": "sw-a", "site": "park", "port": "xe-0/0/1"}
    samples = [Sample("optics", tags, {"rx_dbm": v, "temp_c": 41.5}, t0 + k * 10 * S) for k, v in enumerate(values)]
    samples += [
        Sample("device", {"device": "sw-a", "site": "park", "kind": "switch"}, {"up": 1, "state": "up"}, s.time_ns)
        for s in samples
    ]
    lines = LineEncoder().encode_many(samples)
    recorded = write(
        tmp_path, "rec.lp", "# DDL\nCREATE DATABASE netwatch WITH NAME autogen\n# DML\n" + "\n".join(lines)
    )
    assert rules_test(config, recorded) == 0
    from_lp = capsys.readouterr().out
    assert rules_test(config, write(tmp_path, "fade.yaml", FADE)) == 0
    from_yaml = capsys.readouterr().out
    transitions = [line for line in from_lp.splitlines() if not line.startswith(("--", " "))]
    assert transitions == [line for line in from_yaml.splitlines() if not line.startswith(("--", " "))]
    assert len(transitions) == 2


def test_malformed_line_protocol_names_every_bad_line(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "bad.lp",
        "optics,device=sw-a rx_dbm=-25 1767225600000000000\n"
        "optics,device=sw-a rx_dbm=-25dBm 1767225610000000000\n"
        "optics,device=sw-a rx_dbm=-25\n",
    )
    assert rules_test(config, path) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:2: column 27: field 'rx_dbm': cannot read '-25dBm' (a number, 12i, true/false or a \"string\")",
        f"{path}:3: column 30: no timestamp: a replay needs the time of every point",
        "netwatch rules test: 2 error(s) in the input; nothing was replayed",
    ]


def test_errors_in_several_inputs_come_at_once(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_yaml = write(tmp_path, "a.yaml", FADE.replace("values: ", "valuez: "))
    bad_rule = write(tmp_path, "b.yaml", FADE + "expect: [{rule: optics_rx_lo, entity: x, to: firing, at: 0s}]\n")
    assert rules_test(config, bad_yaml, bad_rule, str(tmp_path / "missing.lp")) == 1
    err = capsys.readouterr().err
    assert f"{bad_yaml}:7: series[0].valuez: unknown key 'valuez' (did you mean 'values'?)" in err
    assert f"{bad_rule}:8: expect: unknown rule 'optics_rx_lo' (did you mean 'optics_rx_low'?)" in err
    assert f"{tmp_path / 'missing.lp'}: no such file" in err
    assert "4 error(s) in the input" in err  # the missing values key counts too


def test_unknown_rule_lists_the_rules_in_force(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rules_test(config, "--rule", "optics_low", write(tmp_path, "f.yaml", FADE)) == 1
    err = capsys.readouterr().err
    assert "rule 'optics_low' is not a rule of the config; rules in force: device_down, span_down" in err
    assert "optics_rx_low" in err


def test_rule_filter(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--rule evaluates only the rules named, and checks only their expectations."""
    both = FADE + ("  - {measurement: device, tags: {device: r1}, field: up, values: '1x3 0x3 1x3'}\n" + EXPECT_FADE)
    path = write(tmp_path, "both.yaml", both)
    assert rules_test(config, path) == 1  # device_down fires too, and nobody expected it
    assert "device_down" in capsys.readouterr().out
    assert rules_test(config, "--rule", "optics_rx_low", path) == 0
    out = capsys.readouterr().out
    assert "device_down" not in out
    assert "expectations met (2 transitions)" in out


def test_a_series_no_rule_reads_is_a_warning(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "typo.yaml", FADE.replace("field: rx_dbm", "field: rx_dBm"))
    assert rules_test(config, path) == 0
    out, err = capsys.readouterr()
    assert err == f"warning: {path}:4: optics has no field 'rx_dBm' (did you mean 'rx_dbm'?)\n"
    assert "no notices" in out


def test_config_errors_are_printed_like_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("alerts: [{name: optics_rx_low, threshold: high}]\n")
    assert main(["rules", "test", "-c", str(bad), write(tmp_path, "f.yaml", FADE)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:1: alerts[0].threshold:" in err
    assert f"{bad}: 1 error(s)" in err


def test_usage_errors_exit_2(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["rules", "test", "-c", str(config)])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["rules", "test", "-c", str(config), "--step", "soon", write(tmp_path, "f.yaml", FADE)])
    assert info.value.code == 2
    assert "invalid duration 'soon'" in capsys.readouterr().err


def test_json_lines_and_stdin(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--json prints one object per transition on stdout, nothing else; '-' reads stdin."""
    t0 = 1_767_225_600 * S
    lines = [f"device,device=r1 up={u}i {t0 + k * 10 * S}" for k, u in enumerate([1, 1, 0, 0, 0, 1, 1])]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    assert rules_test(config, "--json", "-") == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["offset"], r["rule"], r["entity"], r["to"], r["value"]) for r in records] == [
        ("+20s", "device_down", "r1", "firing", 0),
        ("+1m", "device_down", "r1", "resolved", 1),
    ]
    assert records[0]["time"] == "2026-01-01T00:00:20Z"
    assert records[0]["incident"] == records[1]["incident"]
    assert records[0]["labels"]["site"] == "hq"  # filled from the config, as the daemon's samples carry it


def test_tail_lets_keep_firing_for_play_out(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reboot = "interval: 10s\nseries: [{measurement: system, tags: {device: r1}, field: rebooted, values: '0 1 0x5'}]\n"
    path = write(tmp_path, "reboot.yaml", reboot)
    assert rules_test(config, path) == 0
    assert "-- still firing at the end (+1m): device_rebooted r1 since +10s" in capsys.readouterr().out
    assert rules_test(config, "--tail", "10m", path) == 0
    out = capsys.readouterr().out
    assert "still firing" not in out
    assert "device_rebooted  1 firing, 1 resolved" in out


def test_shipped_examples_pass_as_a_subprocess() -> None:
    """The installed `netwatch` console script replays config/series/*.yaml against the example
    config, and every expectation in them holds."""
    script = Path(sys.executable).parent / "netwatch"
    assert script.exists(), f"no console script at {script}; run: .venv/bin/pip install -e '.[test]'"
    examples = sorted(str(p) for p in (ROOT / "config" / "series").glob("*.yaml"))
    assert examples
    proc = subprocess.run(
        [str(script), "rules", "test", "-c", str(ROOT / "config" / "example.yaml"), *examples],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("expectations met") == len(examples)
    assert proc.stderr == ""


def test_a_reader_that_stops_early_gets_no_traceback(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`netwatch rules test --json ... | head -1`: the closed pipe ends the run quietly (exit 1)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w", buffering=1) as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert rules_test(config, "--json", "--pending", write(tmp_path, "fade.yaml", FADE)) == 1
    assert capsys.readouterr().err == ""
