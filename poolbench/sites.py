"""Call sites: where in the user's code a connection was checked out or a Session created.

Shared by ``leak_detection`` (engine/leaks.py) and the pytest plugin. A stack is walked
from the innermost frame outwards; frames of SQLAlchemy, poolbench, the standard library
and site-packages are library frames, the rest are the user's. Under asyncio, SQLAlchemy
runs the sync core in a greenlet whose stack ends at the switch; the walk goes on in the
parent greenlet, where the user's coroutines are waiting.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Iterator
from types import FrameType

import sqlalchemy

SQLALCHEMY_DIR = os.path.dirname(sqlalchemy.__file__)
POOLBENCH_DIR = os.path.dirname(os.path.abspath(__file__))
MAX_FRAMES = 6

_LIBRARY_DIRS = tuple(
    {
        os.path.join(SQLALCHEMY_DIR, ""),
        os.path.join(POOLBENCH_DIR, ""),
        *(
            os.path.join(p, "")
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
            if (p := sysconfig.get_paths().get(key))
        ),
    }
)


_library: dict[str, bool] = {}  # filename -> is_library(filename): a stack walk asks often


def is_library(filename: str) -> bool:
    """True for frames of SQLAlchemy, poolbench, the standard library and site-packages."""
    known = _library.get(filename)
    if known is None:
        known = _library[filename] = (
            filename.startswith(_LIBRARY_DIRS)
            or filename.startswith("<")  # <frozen ...>, <sqlalchemy ...> generated code
            or "site-packages" in filename
            or "dist-packages" in filename
        )
    return known


def skipped(filename: str, skip: tuple[str, ...]) -> bool:
    """True for library frames and for frames under one of ``skip`` (path fragments, or
    module names: ``mylib.vendor`` matches ``.../mylib/vendor/...``)."""
    if is_library(filename):
        return True
    return any(fragment in filename for fragment in skip)


def skip_fragments(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """``leak_detection.skip`` entries as the path fragments :func:`skipped` looks for."""
    out = []
    for name in names:
        if "/" in name or os.sep in name or name.endswith(".py"):
            out.append(name)
        else:
            out.append(os.sep + name.replace(".", os.sep))
    return tuple(out)


Site = tuple[str, int, str]  # filename, line, function: formatted only when shown


def where(frame: FrameType) -> str:
    """``path:line in function``, the path relative to the working directory when below it."""
    return describe_site((frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name))


def describe_site(site: Site) -> str:
    """A :data:`Site` as :func:`where` writes it."""
    filename, line, function = site
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        relative = filename
    if not relative.startswith(".."):
        filename = relative
    return f"{filename}:{line} in {function}"


def frames(frame: FrameType | None) -> Iterator[FrameType]:
    """``frame`` and its callers, continuing into parent greenlets (SQLAlchemy's asyncio)."""
    greenlet = sys.modules.get("greenlet")
    current = greenlet.getcurrent() if greenlet is not None else None
    while frame is not None:
        yield frame
        frame = frame.f_back
        while frame is None and current is not None:
            current = current.parent
            frame = current.gr_frame if current is not None else None


def user_site(skip_frames: int = 1, skip: tuple[str, ...] = ()) -> Site | None:
    """The innermost frame of the caller's stack in the user's code, unformatted (cheap
    enough for every checkout; :func:`describe_site` writes it when it is shown)."""
    for frame in frames(sys._getframe(skip_frames)):
        code = frame.f_code
        if not (skipped(code.co_filename, skip) if skip else is_library(code.co_filename)):
            return (code.co_filename, frame.f_lineno, code.co_name)
    return None


def user_stack(skip_frames: int = 1, limit: int = MAX_FRAMES) -> list[str]:
    """The caller's stack in the user's code, innermost first (library frames skipped)."""
    stack: list[str] = []
    for frame in frames(sys._getframe(skip_frames)):
        if not is_library(frame.f_code.co_filename):
            stack.append(where(frame))
            if len(stack) >= limit:
                break
    return stack or ["<unknown>"]
