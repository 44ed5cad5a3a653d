"""Entry point for `python -m reference_worker`; all logic lives in server.py."""

import sys

from reference_worker.server import main

sys.exit(main())
