"""Alembic environment: the URL comes from the caller (pipeline.store.migrate), never from a file."""
from alembic import context
from sqlalchemy import create_engine, pool

from pipeline.store.engine import normalize_url
from pipeline.store.schema import metadata

config = context.config
url = normalize_url(config.get_main_option("sqlalchemy.url"))

if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()
