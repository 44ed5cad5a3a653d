"""Entry point for `python -m reference_worker`; all logic lives in server.py."""

from reference_worker.server import exit_now, main

exit_now(main())
