"""The reference worker, but leaving with status 0 on its own one second after readiness.

Pool self-tests run it as a worker that exits while healthy, which Snakepit counts as a crash.
"""

from __future__ import annotations

import os
import sys
import threading

from reference_worker import server

_announce = server._announce_ready


def _announce_then_leave(port: int) -> None:
    _announce(port)
    threading.Timer(1.0, os._exit, args=(0,)).start()


if __name__ == "__main__":
    server._announce_ready = _announce_then_leave
    sys.exit(server.main())
