#!/usr/bin/env bash
# Set up netwatch on a Debian machine: the servers the tests use (apt) and a venv (pip).
# Idempotent: re-running installs only what is missing.
#   scripts/setup.sh          servers + venv with test tools
#   scripts/setup.sh --no-apt venv only (when the servers are managed elsewhere)
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd: only for systemd-analyze (tests/unit/test_systemd_unit.py checks systemd/netwatch.service offline).
# gst-rtsp-server (run by the system python3 with python3-gi): the real RTSP server of tests/servers/rtsp.py.
# nftables: `netwatch lab` makes a dark device's loopback address drop everything (src/netwatch/lab/blackhole.py).
# chromium: the status page is rendered in headless Chromium by tests/integration/test_status_page.py.
APT_PACKAGES=(influxdb influxdb-client victoria-metrics mosquitto mosquitto-clients snmpd snmp snmptrapd
              prometheus-snmp-exporter prometheus-alertmanager fping systemd nftables chromium
              python3-gi gir1.2-gst-rtsp-server-1.0 gir1.2-gstreamer-1.0 gstreamer1.0-plugins-base
              gstreamer1.0-plugins-good)
PY=${PYTHON:-python3}

if [[ "${1:-}" != "--no-apt" ]]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.netwatch-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]'
  touch "$stamp"
fi
