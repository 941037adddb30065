"""``python -m poolbench`` and the ``poolbench`` command.

A Ctrl-C while poolbench is still importing ends it as one later does: one line, exit 130,
no traceback."""

from __future__ import annotations

import sys


def entry() -> None:
    try:
        from .cli import main
    except KeyboardInterrupt:
        sys.stderr.write("poolbench: interrupted\n")
        raise SystemExit(130) from None
    main(prog_name="poolbench")


if __name__ == "__main__":
    entry()
