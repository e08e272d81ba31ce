"""A real RTSP server on a free loopback port: GStreamer's gst-rtsp-server (see gst_rtsp_server.py).

It runs under Debian's /usr/bin/python3, which has the GObject bindings the venv lacks; ffmpeg
alone cannot answer DESCRIBE. One server per auth mode, shared by a test module.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from tests.servers.common import free_port, stop, wait_until

SCRIPT = Path(__file__).with_name("gst_rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
APT = "gir1.2-gst-rtsp-server-1.0 gir1.2-gstreamer-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good python3-gi"
USER, PASSWORD = "admin", "s3cret-Camera"

Mode = Literal["none", "basic", "digest"]


@dataclass
class RtspServer:
    """One gst-rtsp-server: ``/cam1`` open, ``/cam2`` behind ``mode`` auth (USER/PASSWORD), the rest 404."""

    mode: Mode
    port: int
    proc: subprocess.Popen[bytes]

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def start_rtsp_server(mode: Mode, workdir: Path) -> RtspServer:
    """Start the server and wait until it accepts connections; fail with the install command if it cannot run."""
    if not Path(SYSTEM_PYTHON).exists():
        pytest.fail(f"{SYSTEM_PYTHON} is missing: run scripts/setup.sh (or apt-get install {APT})", pytrace=False)
    port = free_port()
    log = workdir / f"gst-rtsp-{mode}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(SCRIPT), str(port), mode, USER, PASSWORD], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: _listening(port), timeout=15, what=f"gst-rtsp-server on port {port}", proc=proc)
    except pytest.fail.Exception:
        stop(proc)
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        pytest.fail(
            f"gst-rtsp-server did not start (run scripts/setup.sh, or apt-get install {APT}); its output:\n{tail}",
            pytrace=False,
        )
    return RtspServer(mode, port, proc)


def _fixture(mode: Mode, factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    server = start_rtsp_server(mode, factory.mktemp(f"rtsp-{mode}"))
    try:
        yield server
    finally:
        stop(server.proc)


@pytest.fixture(scope="module")
def rtsp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    """An RTSP server without auth: /cam1 streams MJPEG."""
    yield from _fixture("none", tmp_path_factory)


@pytest.fixture(scope="module")
def rtsp_server_basic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    """An RTSP server whose /cam2 needs Basic auth (USER/PASSWORD); /cam1 stays open."""
    yield from _fixture("basic", tmp_path_factory)


@pytest.fixture(scope="module")
def rtsp_server_digest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspServer]:
    """An RTSP server whose /cam2 needs Digest auth (USER/PASSWORD); /cam1 stays open."""
    yield from _fixture("digest", tmp_path_factory)
