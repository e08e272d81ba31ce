"""The lab's MQTT broker: a mosquitto process on a loopback port, with a config made for it.

Door panels need a broker between them and netwatch. The lab starts mosquitto (Debian package
``mosquitto``) with a generated config; without it the lab runs without panels, and
:class:`BrokerUnavailable` says how to get them. No pure-Python broker stands in: amqtt 0.12
installs on Python 3.11 but did not hand a persistent session (``clean_session=False``, which
netwatch's MQTT ingest uses) the QoS 1 messages published while it was away, and a lab that
behaves unlike production would test the wrong thing.

Pitfalls the config avoids (found with the test suite's broker):

* ``set_tcp_nodelay true``: without it each QoS 1 round trip takes ~40 ms (Nagle and delayed ACKs).
* ``user root`` when run as root: mosquitto started as root drops to the ``mosquitto`` user and
  then cannot read a root-owned 0600 password file or write persistence to a root-owned directory.
* ``persistence``: sessions and queued QoS 1 messages are saved on SIGTERM and read at start, so
  a broker restarted on the same port (:meth:`MosquittoBroker.restart`) loses no queued event.

The broker is one child process: :meth:`MosquittoBroker.stop` terminates and reaps it (SIGKILL
after a grace period), and nothing else is started.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Self

INSTALL_HINT: Final = "install mosquitto (apt-get install mosquitto) for simulated door panels"
#: Where Debian puts the daemon, which is often not on a user's PATH.
_SYSTEM_PATH: Final = "/usr/sbin:/usr/bin:/sbin:/bin"


class BrokerError(RuntimeError):
    """The broker could not be started (the message says why, with the end of its log)."""


class BrokerUnavailable(BrokerError):
    """No mosquitto (or mosquitto_passwd, for users) on this host."""


def find_tool(name: str, search_path: str | None = None) -> str | None:
    """Return the path of a mosquitto tool: on ``search_path`` if given, else PATH and the system's sbin."""
    if search_path is not None:
        return shutil.which(name, path=search_path)
    return shutil.which(name) or shutil.which(name, path=_SYSTEM_PATH)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port free on ``host`` right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class MosquittoBroker:
    """One mosquitto listening on ``host:port`` with its config, log and persistence in ``workdir``.

    ``port`` 0 picks a free port at the first start and keeps it for restarts. Anonymous unless
    ``users`` (name -> password) are given. ``search_path`` limits where mosquitto is looked
    for (default: PATH, then the system's sbin). Starting blocks until the broker accepts
    connections, tens of milliseconds.
    """

    workdir: Path
    port: int = 0
    host: str = "127.0.0.1"
    users: dict[str, str] = field(default_factory=dict, repr=False)
    persistence: bool = True
    search_path: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"mqtt://{host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_file(self) -> Path:
        return self.workdir / "mosquitto.log"

    def _config(self) -> str:
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "set_tcp_nodelay true",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:
            lines.append("user root")
        if self.users:
            lines += ["allow_anonymous false", f"password_file {self._password_file()}"]
        else:
            lines.append("allow_anonymous true")
        return "\n".join(lines) + "\n"

    def _password_file(self) -> Path:
        tool = find_tool("mosquitto_passwd", self.search_path)
        if tool is None:
            raise BrokerUnavailable("mosquitto_passwd is not installed: apt-get install mosquitto")
        passwd = self.workdir / "passwd"
        passwd.unlink(missing_ok=True)
        for i, (user, password) in enumerate(self.users.items()):
            flags = ["-c", "-b"] if i == 0 else ["-b"]  # -c creates the file, -b takes the password as an argument
            subprocess.run([tool, *flags, str(passwd), user, password], check=True, capture_output=True)
        return passwd

    def start(self, timeout: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections; raise BrokerError if it cannot."""
        if self.proc is not None and self.proc.poll() is None:
            return
        binary = find_tool("mosquitto", self.search_path)
        if binary is None:
            raise BrokerUnavailable(f"mosquitto is not installed: {INSTALL_HINT}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port(self.host)
        if self.listening():
            # Otherwise the readiness wait below would take another process (a broker left by a
            # lab that crashed, say) for ours, while ours exits with "address in use".
            raise BrokerError(f"something already listens on {self.host}:{self.port}: not starting another broker")
        self.config_file.write_text(self._config())
        with self.log_file.open("ab") as out:
            self.proc = subprocess.Popen(
                [binary, "-c", str(self.config_file)], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not self.listening():
            if self.proc.poll() is not None:
                self.proc = None
                raise BrokerError(f"mosquitto on {self.host}:{self.port} exited at start: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"mosquitto on {self.host}:{self.port} did not listen within {timeout:g}s")
            time.sleep(0.01)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (it saves its persistence on SIGTERM) and reap it; SIGKILL after ``timeout``."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port (what a broker upgrade or crash looks like to clients)."""
        self.stop()
        self.start()

    def listening(self) -> bool:
        """Whether something accepts connections on the broker's address."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
