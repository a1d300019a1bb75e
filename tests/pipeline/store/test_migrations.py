"""Migrations on a database of their own: 0011 gives every job (and benchmark row) a model."""
from __future__ import annotations

import uuid

from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pipeline.store.engine import normalize_url
from pipeline.store.migrate import alembic_config, upgrade


def fresh_database(server_url: str) -> str:
    """The URL of a new, empty database on the test server."""
    name = f"mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalize_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"create database {name}"))
    admin.dispose()
    return make_url(normalize_url(server_url)).set(database=name).render_as_string(hide_password=False)


def test_jobs_from_before_there_were_several_models_are_the_fmnist_models(servers):
    # Given a database at 0010 holding a job (from the single-model days)
    url = fresh_database(servers["database_url"])
    upgrade(url, "0010")
    engine = create_engine(url)
    job_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(text("insert into jobs (id, status, backend, pool, total) values (:id, 'succeeded', 'int8', "
                          "'cpu', 0)"), {"id": job_id})
    # When it is migrated to the head
    upgrade(url)
    # Then that job's model is fmnist, and a new job must name its model (no default is left behind)
    with engine.connect() as conn:
        assert conn.execute(text("select model from jobs where id = :id"), {"id": job_id}).scalar() == "fmnist"
        default = conn.execute(text("select column_default from information_schema.columns "
                                    "where table_name = 'jobs' and column_name = 'model'")).scalar()
    assert default is None
    # And the migration goes back down cleanly
    command.downgrade(alembic_config(url), "0010")
    with engine.connect() as conn:
        assert conn.execute(text("select count(*) from information_schema.columns "
                                 "where table_name = 'jobs' and column_name = 'model'")).scalar() == 0
    engine.dispose()
