"""The reference worker with the strict command line of Snakepit 0.8.1 … 0.9.1's own bridge.

That bridge's argparse knows no `--snakepit-instance-name` (Snakepit appends it from 0.10.0) and exits 2 on any
flag it does not know. Real Snakepit up to 0.9.1 runs it; from 0.10.0 it cannot start. The matrix self-tests run
it to see a worker conformant with some releases only.
"""

from __future__ import annotations

import argparse
import sys

from reference_worker import server

_parse = server.parse_args
_UNKNOWN_TO_IT = ("--snakepit-instance-name", "--snakepit-instance-token")


def _strict(argv: list[str]) -> argparse.Namespace:
    args = _parse(argv)
    rejected = [*args.unknown, *(a for a in argv if a.split("=")[0] in _UNKNOWN_TO_IT)]
    if rejected:
        sys.stderr.write(f"grpc_server.py: error: unrecognized arguments: {' '.join(dict.fromkeys(rejected))}\n")
        sys.exit(2)
    return args


if __name__ == "__main__":
    server.parse_args = _strict
    sys.exit(server.main())
