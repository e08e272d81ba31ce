#!/usr/bin/env bash
# Set up (idempotent) and run every check: lint, types, unit and integration tests.
# Integration tests start real servers (influxd, victoria-metrics, snmpd) on loopback ports;
# they need root for the network-namespace tests and for apt on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
