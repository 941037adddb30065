"""A FastAPI service with a streaming export, for scenarios/fastapi-streaming/scenario.yaml.

Nothing leaks: ``get_db`` closes its session in ``finally``. But FastAPI runs a yield
dependency's teardown after the response has been sent, and ``/export`` streams its rows
from the request's session for about 600 ms: the connection stays checked out for the
whole response, not for the query. The database: ``DATABASE_URL`` (or ``POOLBENCH_URL``).
"""

from __future__ import annotations

import os
import time

import sqlalchemy as sa
from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse
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


@app.get("/export")
def export(db: Session = Depends(get_db)):
    def rows():
        for i in range(3):
            yield f"{db.execute(sa.text('SELECT :i'), {'i': i}).scalar_one()}\n"
            time.sleep(0.2)  # the client reads slowly, or the rows are many

    return StreamingResponse(rows(), media_type="text/plain")
