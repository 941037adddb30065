"""Text from a scenario or a task, made safe to print: control characters (a terminal's
escape sequences among them) are shown as ``\\x1b``, never sent to the terminal."""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, and the C1 controls (\x9b is a one-byte CSI)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character but tab and newline written as an escape."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def one_line(text: str) -> str:
    """:func:`printable`, and newlines and tabs as escapes too (names, labels)."""
    return printable(text).replace("\n", "\\n").replace("\t", "\\t")


__all__ = ["one_line", "printable"]
