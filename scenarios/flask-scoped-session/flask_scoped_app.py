"""A Flask service with a ``scoped_session`` that is never removed, for
scenarios/flask-scoped-session/scenario.yaml (app.wsgi).

The common Flask pattern without Flask-SQLAlchemy: a module-level engine and a
``scoped_session`` registry. ``/items/<id>`` uses ``db_session``, which nothing ever
removes: each request thread's session keeps its connection checked out. ``/fixed/items/<id>``
uses ``fixed_session``, removed in ``teardown_appcontext`` as Flask's docs say. The
database: ``DATABASE_URL`` (or ``POOLBENCH_URL``).
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask
from sqlalchemy.orm import scoped_session, sessionmaker

DATABASE_URL = os.environ.get("DATABASE_URL") or os.environ.get("POOLBENCH_URL")
if not DATABASE_URL:
    raise RuntimeError("set DATABASE_URL to the database this service uses")

engine = sa.create_engine(DATABASE_URL)
db_session = scoped_session(sessionmaker(bind=engine))  # the bug: never removed
fixed_session = scoped_session(sessionmaker(bind=engine))
app = Flask(__name__)


@app.teardown_appcontext
def remove_fixed_session(exception=None):
    fixed_session.remove()


@app.route("/items/<int:item_id>")
def read_item(item_id):
    return {"id": db_session.execute(sa.text("SELECT :i"), {"i": item_id}).scalar_one()}


@app.route("/fixed/items/<int:item_id>")
def read_item_fixed(item_id):
    return {"id": fixed_session.execute(sa.text("SELECT :i"), {"i": item_id}).scalar_one()}
