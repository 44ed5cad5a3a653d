#!/usr/bin/env bash
# The CI gate for a Snakepit worker: judge it with snakepit-contract, exit 0 only when it is conformant.
# Exit status: 0 conformant, 1 not conformant, 2 no verdict (harness failure, or the kit could not be
# installed), 3 usage error. Options: ci/gate.sh --help; the lines to paste into CI: docs/gate.md.
# Any Python >= 3.11 runs it (SNAKEPIT_GATE_PYTHON, else python3); it installs the kit into a venv if needed.
set -euo pipefail
python="${SNAKEPIT_GATE_PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "gate: needs Python >= 3.11 as '$python' (set SNAKEPIT_GATE_PYTHON to one)" >&2
    exit 3
fi
exec "$python" "$(dirname "$(readlink -f "$0")")/gate.py" "$@"
