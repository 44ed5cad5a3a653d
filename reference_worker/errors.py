"""Application errors of contract tools, in the JSON form every Snakepit era accepts (contract §3)."""

from __future__ import annotations

import json


class ToolError(Exception):
    """An application error: reported as `success=false`, never as a non-OK ExecuteTool status."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def format_error(error_type: str, message: str, *, tool_name: str, session_id: str) -> str:
    """Render as Snakepit >= 0.7.4 parses it (`{"type","message",...}`). Sent in every era: before 0.7.4 Snakepit
    shows error_message as text, which this JSON is, carrying the message (docs/contract.md §3)."""
    return json.dumps(
        {
            "type": error_type,
            "message": message,
            "stacktrace": [],
            "traceback": "",
            "context": {"tool_name": tool_name, "session_id": session_id},
        },
        ensure_ascii=False,
    )
