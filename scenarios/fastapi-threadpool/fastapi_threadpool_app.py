"""A FastAPI service with sync endpoints and no leak, for scenarios/fastapi-threadpool/scenario.yaml.

Every session is closed (``try/finally``); each request holds its connection for a
report query of about 300 ms. FastAPI runs sync endpoints and sync dependencies in
Starlette's threadpool (anyio's default limiter: 40 tokens), so up to 40 requests are
in flight against the default pool of 5 + 10 connections. The database: ``DATABASE_URL``
(or ``POOLBENCH_URL``).
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
    try:
        yield db
    finally:
        db.close()


@app.get("/reports/{report_id}")
def report(report_id: int, db: Session = Depends(get_db)):
    # a slow report: the connection is held for the whole query
    db.execute(sa.text("SELECT pg_sleep(0.3)")).all()
    return {"id": report_id}
