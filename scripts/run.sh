#!/usr/bin/env bash
# Set up (idempotent, venv only) and run the daemon in the foreground.
#   scripts/run.sh [CONFIG]     default: config/example.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --no-apt
config=${1:-config/example.yaml}
.venv/bin/netwatch check-config "$config"
exec .venv/bin/netwatch run -c "$config"
