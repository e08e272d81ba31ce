"""`netwatch demo` on a machine without InfluxDB: it runs, shows live state in a terminal, and
stops cleanly on Ctrl-C, leaving no process or firewall table behind."""

from __future__ import annotations

import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from netwatch.lab.blackhole import Blackholes
from netwatch.lab.spec import load_lab
from tests.servers.labfile import lab_file

NETWATCH = str(Path(sys.executable).with_name("netwatch"))


def _read_until(fd: int, needle: bytes, within: float, seen: bytearray) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                return needle in seen
            seen.extend(chunk)
            if needle in seen[-200_000:]:
                return True
    return False


def test_the_demo_shows_the_city_live_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    lab = lab_file(tmp_path, "127.24.0.0/16")
    workdir = tmp_path / "demo"
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [NETWATCH, "demo", "--lab", str(lab), "--workdir", str(workdir), "--no-story"],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "COLUMNS": "120", "LINES": "50", "TERM": "xterm"},
        start_new_session=True,
    )
    os.close(child)
    seen = bytearray()
    try:
        # The view redraws in place (ANSI) and, once the first polls are in, counts every device up.
        assert _read_until(main, b"37 up", 60, seen), bytes(seen[-3000:]).decode(errors="replace")
        text = bytes(seen).decode(errors="replace")
        assert "\x1b[H\x1b[2J" in text  # a live view, redrawn in place
        assert "Villa Parke Community Center" in text
        assert "OPEN INCIDENTS" in text
        assert "in the spool" in text  # no InfluxDB: points are kept, and it says where
        # The daemon's status page and state API, as the on-call phone and the view read them:
        # they show the city, and never a secret of the written config.
        api = load_lab(lab).spec.lab.api
        secrets = [p.read_text().strip() for p in (workdir / "credentials").iterdir()]
        for path in ("/status", "/api/v1/state"):
            with urllib.request.urlopen(f"http://{api}{path}", timeout=10) as response:
                body = response.read().decode()
            assert response.status == 200
            assert "Villa Parke" in body
            assert not [secret for secret in secrets if secret in body], path
        proc.send_signal(signal.SIGINT)
        assert proc.wait(40) == 0
        _read_until(main, b"netwatch demo stopped", 5, seen)
        assert b"netwatch demo stopped" in seen
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(main)
    log = (workdir / "netwatch.log").read_text()
    assert '"event": "netwatch_stopping"' in log
    assert '"level": "error"' not in log
    left = subprocess.run(["pgrep", "-f", str(workdir)], capture_output=True, text=True)
    assert left.stdout.strip() == ""
    if shutil.which("nft"):
        table = Blackholes(load_lab(lab).spec.lab.network).table
        assert table not in subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
