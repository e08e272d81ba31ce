"""Helpers shared by the server fixtures: free ports, readiness waits, clean stops."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable

import pytest


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """Return a loopback port that is free right now (TCP by default, UDP with SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_binary(name: str, apt_package: str) -> str:
    """Return the path of a server binary, or fail the test with the command that installs it.

    Integration tests fail rather than skip: CI installs what they need first, so a missing
    binary is a broken set-up, not a reason to pass.
    """
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(
            f"{name} is not installed: run scripts/setup.sh (or apt-get install {apt_package})",
            pytrace=False,
        )
    return path


def wait_until(ready: Callable[[], bool], *, timeout: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll ``ready`` until it is true; fail with ``what`` if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with code {proc.returncode} before it was ready", pytrace=False)
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.02)
    stop(proc)
    pytest.fail(f"{what} was not ready within {timeout:g}s", pytrace=False)


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate a server started by a fixture and reap it (SIGKILL if it does not go)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
