"""The table where the nodes of one run find each other, in the database under test.

``poolbench.nodes`` (a ``poolbench`` schema on PostgreSQL, a ``poolbench`` database on
MySQL/MariaDB) holds one row per node of a run while it lasts: when it joined and when
it was last seen (the server's clock, as epoch seconds, so host clocks never matter),
the common start once it is fixed, and when the node finished and read the outcome.
The last node to read the outcome deletes the run's rows, then the table and the schema
when no run uses them (:meth:`Registry.drop_if_unused`); rows of nodes that stopped
heartbeating are cleared by the next run of the same name. A node that finds the table
gone as it joins (another run's last node dropped it that instant) creates it again.

Every instant comes from the server (``now`` below); every statement is short and runs
in autocommit or in one short transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ..db.backends import backend_for

NAMESPACE = "poolbench"
TABLE = f"{NAMESPACE}.nodes"
ABANDONED_S = 3600.0

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS poolbench.nodes (
    run_name VARCHAR(100) NOT NULL,
    node_index INTEGER NOT NULL,
    nodes INTEGER NOT NULL,
    host VARCHAR(255) NOT NULL,
    pid INTEGER NOT NULL,
    joined_at DOUBLE PRECISION NOT NULL,
    seen_at DOUBLE PRECISION NOT NULL,
    start_at DOUBLE PRECISION,
    finished_at DOUBLE PRECISION,
    collected_at DOUBLE PRECISION,
    PRIMARY KEY (run_name, node_index)
)
"""


@dataclass(frozen=True)
class NodeRow:
    """One node of a run as the table shows it (instants on the server's clock)."""

    index: int
    nodes: int
    host: str
    pid: int
    joined_at: float
    seen_at: float
    start_at: float | None
    finished_at: float | None
    collected_at: float | None


class Registry:
    """The run's rows, read and written through ``engine`` (its own small pool)."""

    def __init__(self, engine: Engine, run_name: str) -> None:
        backend = backend_for(engine.url)
        now_sql, create_sql = backend.clock_sql, backend.create_namespace_sql(NAMESPACE)
        if now_sql is None or create_sql is None:
            raise ValueError(f"nodes cannot use {backend.title} as coordinator")
        self.engine = engine
        self.run_name = run_name
        self.now_sql = now_sql  # the server's clock as epoch seconds with microseconds
        self._create_sql = create_sql
        self._drop_sql = backend.drop_namespace_sql(NAMESPACE)

    def create(self) -> None:
        """The schema and the table, if missing (idempotent; safe when nodes race)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                conn.exec_driver_sql(self._create_sql)
                conn.exec_driver_sql(_CREATE_TABLE)
            except sa.exc.IntegrityError:
                # PostgreSQL: two nodes creating it at the same instant; one of them won
                conn.exec_driver_sql(_CREATE_TABLE)

    def now(self, conn: Connection) -> float:
        return float(conn.exec_driver_sql(f"SELECT {self.now_sql}").scalar_one())

    def rows(self, conn: Connection | None = None, lock: bool = False) -> list[NodeRow]:
        sql = (
            "SELECT node_index, nodes, host, pid, joined_at, seen_at, start_at, finished_at,"
            f" collected_at FROM {TABLE} WHERE run_name = :run ORDER BY node_index"
            + (" FOR UPDATE" if lock else "")
        )
        if conn is None:
            with self.engine.connect() as own:
                return self.rows(own)
        result = conn.execute(sa.text(sql), {"run": self.run_name})
        return [NodeRow(*(r[:4]), *(_f(v) for v in r[4:])) for r in result]

    def clear_stale(self, conn: Connection, stale_s: float) -> int:
        """Rows of this run whose node stopped heartbeating (a dead node, an old run)."""
        result = conn.execute(
            sa.text(
                f"DELETE FROM {TABLE} WHERE run_name = :run AND seen_at < {self.now_sql} - :stale"
            ),
            {"run": self.run_name, "stale": stale_s},
        )
        return result.rowcount or 0

    def insert(self, conn: Connection, index: int, nodes: int, host: str, pid: int) -> None:
        conn.execute(
            sa.text(
                f"INSERT INTO {TABLE} (run_name, node_index, nodes, host, pid, joined_at, seen_at)"
                f" VALUES (:run, :index, :nodes, :host, :pid, {self.now_sql}, {self.now_sql})"
            ),
            {"run": self.run_name, "index": index, "nodes": nodes, "host": host, "pid": pid},
        )

    def touch(self, conn: Connection, index: int) -> int:
        """The heartbeat: this node is alive (0 when its row is gone)."""
        result = conn.execute(
            sa.text(
                f"UPDATE {TABLE} SET seen_at = {self.now_sql}"
                " WHERE run_name = :run AND node_index = :index"
            ),
            {"run": self.run_name, "index": index},
        )
        return result.rowcount or 0

    def set_start(self, conn: Connection, start_at: float) -> None:
        conn.execute(
            sa.text(f"UPDATE {TABLE} SET start_at = :start WHERE run_name = :run"),
            {"run": self.run_name, "start": start_at},
        )

    def mark(self, conn: Connection, index: int, column: str) -> int:
        """Set ``finished_at`` or ``collected_at`` of this node to the server's now (0 when
        its row is gone)."""
        assert column in ("finished_at", "collected_at")
        result = conn.execute(
            sa.text(
                f"UPDATE {TABLE} SET {column} = {self.now_sql}, seen_at = {self.now_sql}"
                " WHERE run_name = :run AND node_index = :index"
            ),
            {"run": self.run_name, "index": index},
        )
        return result.rowcount or 0

    def remove_unstarted(self, conn: Connection, index: int) -> None:
        """This node's row, unless the run has started (then the others must see it go)."""
        conn.execute(
            sa.text(
                f"DELETE FROM {TABLE} WHERE run_name = :run AND node_index = :index"
                " AND start_at IS NULL"
            ),
            {"run": self.run_name, "index": index},
        )

    def drop_if_unused(self) -> bool:
        """The table, and the schema if nothing else is in it, when no run has rows left:
        the database under test is left as it was. Whether they were dropped. Rows of
        runs abandoned for over ABANDONED_S (every node killed) do not keep it."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                conn.execute(
                    sa.text(f"DELETE FROM {TABLE} WHERE seen_at < {self.now_sql} - :age"),
                    {"age": ABANDONED_S},
                )
                if conn.exec_driver_sql(f"SELECT count(*) FROM {TABLE}").scalar_one():
                    return False  # another run is using it
                conn.exec_driver_sql(f"DROP TABLE IF EXISTS {TABLE}")
                others = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM information_schema.tables WHERE table_schema = :ns"
                    ),
                    {"ns": NAMESPACE},
                ).scalar_one()
                if not others and self._drop_sql is not None:
                    conn.exec_driver_sql(self._drop_sql)
            except sa.exc.DBAPIError:
                return False  # a run joining at this moment, or something else in the schema
        return True

    def delete_run(self, conn: Connection) -> None:
        conn.execute(sa.text(f"DELETE FROM {TABLE} WHERE run_name = :run"), {"run": self.run_name})


def _f(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]
