"""Entry point for `python -m reference_worker`; all logic lives in server.py."""

from .server import exit_now, main

exit_now(main())
