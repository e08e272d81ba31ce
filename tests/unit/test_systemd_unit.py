"""systemd/netwatch.service: valid to systemd-analyze, exposure 2.0 or below, the keys the daemon relies on.

No running systemd is needed: ``systemd-analyze verify`` and ``security --offline=yes`` read the file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "netwatch.service"
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.fail("systemd-analyze is missing: apt-get install systemd (scripts/setup.sh installs it)")
    return path


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse a unit file into section -> key -> values (keys such as LoadCredential= repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"assignment outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not an assignment: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def unit_copy(tmp_path: Path, text: str | None = None) -> Path:
    """Copy the unit with ExecStart pointing at an executable this machine has (verify checks it)."""
    exe = Path(sys.executable).parent / "netwatch"
    if not os.access(exe, os.X_OK):
        exe = Path("/bin/true")
    text = UNIT.read_text() if text is None else text
    new, n = re.subn(r"^ExecStart=/usr/local/bin/netwatch\b", f"ExecStart={exe}", text, flags=re.M)
    assert n == 1, "ExecStart=/usr/local/bin/netwatch ... not found in the unit"
    path = tmp_path / "netwatch.service"
    path.write_text(new)
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "cat", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        [systemd_analyze(), "--no-pager", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def verify_problems(path: Path) -> str:
    """Return what ``systemd-analyze verify`` objects to; warnings exit 0, so stderr counts too."""
    result = analyze("verify", str(path))
    problems = result.stderr.strip()
    if result.returncode != 0:
        problems = f"rc={result.returncode}\n{problems}\n{result.stdout.strip()}"
    return problems


def test_unit_verifies_without_a_single_warning(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit: rc 0 and nothing at all on stderr."""
    assert verify_problems(unit_copy(tmp_path)) == ""


@pytest.mark.parametrize(
    ("mistake", "replacement"),
    [
        ("Type=notify", "Type=notifyy"),
        ("WatchdogSec=30", "WatchdogSec=abc"),
        ("Restart=on-failure", "Restart=sometimes"),
        ("NotifyAccess=main", "NotifyAcess=main"),
    ],
)
def test_verify_check_catches_what_exits_zero(tmp_path: Path, mistake: str, replacement: str) -> None:
    """A typo that systemd only warns about (rc 0) still fails the check above."""
    text = UNIT.read_text()
    assert mistake in text
    path = unit_copy(tmp_path, text.replace(mistake, replacement))
    assert verify_problems(path) != ""


def test_exposure_is_at_most_two(tmp_path: Path) -> None:
    """systemd-analyze security rates the sandbox 2.0 or below (OK)."""
    result = analyze("security", "--offline=yes", str(unit_copy(tmp_path)))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, f"no overall exposure in:\n{result.stdout[-2000:]}\n{result.stderr}"
    failing = "\n".join(line for line in result.stdout.splitlines() if line.lstrip().startswith("✗"))
    assert float(match.group(1)) <= MAX_EXPOSURE, f"exposure {match.group(1)} > {MAX_EXPOSURE}:\n{failing}"


def test_unit_has_the_keys_the_daemon_relies_on() -> None:
    """Type=notify with a watchdog, notifications from the main process only, SIGHUP reload, SIGTERM stop."""
    service = parse_unit(UNIT.read_text())["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    [watchdog] = service["WatchdogSec"]
    # feed_watchdog sends every half interval and the scheduler wakes every second: a few seconds at least.
    assert watchdog.isdigit(), "WatchdogSec in plain seconds"
    assert int(watchdog) >= 5
    assert service["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert "KillSignal" not in service, "the daemon stops cleanly on SIGTERM, the default"
    assert service["Restart"] == ["on-failure"]
    assert service["StateDirectory"] == ["netwatch"]
    assert service["DynamicUser"] == ["yes"]
    assert service["CapabilityBoundingSet"] == ["CAP_NET_RAW"]
    assert service["AmbientCapabilities"] == ["CAP_NET_RAW"]
    # PrivateUsers= would leave no CAP_NET_RAW in the host's network namespace (no raw ICMP).
    assert service.get("PrivateUsers", ["no"]) == ["no"]
    [execstart] = service["ExecStart"]
    assert execstart.split()[:2] == ["/usr/local/bin/netwatch", "run"]


def test_unit_loads_the_credentials_the_example_config_names() -> None:
    """Every secret the example config reads is offered as a credential, by the name the docs use."""
    service = parse_unit(UNIT.read_text())["Service"]
    ids = {value.partition(":")[0] for value in service["LoadCredential"]}
    example = (UNIT.parents[1] / "config" / "example.yaml").read_text()
    named = {Path(m).name for m in re.findall(r"\b\w+_file:\s*([^\s,}]+)", example)}
    assert named, "the example config names no secret files"
    assert named <= ids
    assert {"snmp-community", "snmpv3-auth", "snmpv3-priv", "influxdb-password"} <= ids


# A CPython process under MemoryDenyWriteExecute= must not map writable+executable memory. Linux
# 6.3+ enforces the same rule per process (prctl PR_SET_MDWE), so the import and a first use of
# every native dependency can be checked here without systemd.
MDWE_SCRIPT = textwrap.dedent(
    """
    import ctypes, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:          # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
        print(f"no PR_SET_MDWE (errno {ctypes.get_errno()})")
        sys.exit(3)
    import mmap
    try:
        mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        sys.exit("W+X mapping was allowed: the check would prove nothing")
    except OSError:
        pass

    import asyncio, importlib, pkgutil, sqlite3, ssl
    import netwatch
    for mod in pkgutil.walk_packages(netwatch.__path__, "netwatch."):
        importlib.import_module(mod.name)
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    enc = Cipher(algorithms.AES(bytes(32)), modes.CTR(bytes(16))).encryptor()
    enc.update(b"snmp") + enc.finalize()
    db = sqlite3.connect(":memory:")
    db.execute("create table t (x)")
    ssl.create_default_context()

    async def main():
        import aiohttp
        async with aiohttp.ClientSession() as session:
            pass
        await asyncio.sleep(0.01)

    asyncio.run(main())
    print("ok")
    """
)


def test_python_and_dependencies_run_without_writable_executable_memory() -> None:
    """Everything netwatch imports works under MemoryDenyWriteExecute=yes (no ctypes callbacks, no JIT)."""
    result = subprocess.run(
        [sys.executable, "-c", MDWE_SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode == 3:
        pytest.skip(f"kernel cannot emulate MemoryDenyWriteExecute (Linux 6.3+ needed): {result.stdout.strip()}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"
