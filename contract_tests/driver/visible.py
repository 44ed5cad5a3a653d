"""Text a worker wrote, made safe to show: its control characters and escape sequences become visible escapes.

A worker's output and error messages reach the terminal, conformance.md and conformance.html; raw, an escape
sequence there could recolour the terminal, set its title, clear the screen or reorder text (bidi controls).
"""

from __future__ import annotations

import re

# C0 controls except newline and tab, DEL, C1 controls, and the Unicode format controls that reorder text.
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str) -> str:
    """The text with every control character written as an escape, e.g. ESC as \\x1b; lines and tabs kept."""
    return _HIDDEN.sub(_escape, text)
