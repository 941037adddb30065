"""The seeds' FastAPI service, for scenarios/fastapi-get-db/scenario.yaml (app.asgi).

A module-level engine with SQLAlchemy's default pool (5 + 10), a ``get_db`` dependency
as the seeds' first post wrote it (it never closes the session), and the fixed one with
``try/finally``. ``/items/{id}`` uses the leaky dependency, ``/fixed/items/{id}`` the
fixed one. The database: ``DATABASE_URL`` (or ``POOLBENCH_URL``).
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from sqlalchemy.orm import Session, sessionmaker

DATABASE_URL = os.environ.get("DATABASE_URL") or os.environ.get("POOLBENCH_URL")
if not DATABASE_URL:
    raise RuntimeError("set DATABASE_URL to the database this service uses")

engine = sa.create_engine(DATABASE_URL)
SessionLocal = sessionmaker(bind=engine, autoflush=False)
app = FastAPI()


def get_db():
    db = SessionLocal()
    yield db  # the bug: no close()


def get_db_fixed():
    db = SessionLocal()
    try:
        yield db
    finally:
        db.close()


@app.get("/items/{item_id}")
def read_item(item_id: int, db: Session = Depends(get_db)):
    return {"id": db.execute(sa.text("SELECT :id"), {"id": item_id}).scalar_one()}


@app.get("/fixed/items/{item_id}")
def read_item_fixed(item_id: int, db: Session = Depends(get_db_fixed)):
    return {"id": db.execute(sa.text("SELECT :id"), {"id": item_id}).scalar_one()}
