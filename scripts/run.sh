#!/usr/bin/env bash
# Set up (idempotent) and run netwatch in the foreground.
#   scripts/run.sh              the demo: a simulated city on loopback and netwatch watching it
#                               (installs mosquitto and nftables with apt for its door panels and
#                               ICMP faults; Ctrl-C stops it)
#   scripts/run.sh CONFIG       the daemon with CONFIG (venv only; nothing is installed with apt)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then
  scripts/setup.sh
  exec .venv/bin/netwatch demo
fi
scripts/setup.sh --no-apt
.venv/bin/netwatch check-config "$1"
exec .venv/bin/netwatch run -c "$1"
