"""The tag of this run: every worker it starts, process or container, carries it, so the run can find its own.

Kept apart from launcher.py and container.py, which both tag what they start.
"""

from __future__ import annotations

import uuid

RUN_TAG_ENV = "SNAKEPIT_CONTRACT_RUN"
RUN_TAG = uuid.uuid4().hex
