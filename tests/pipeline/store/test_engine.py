"""pipeline.store.engine: database URLs name their driver; engines are per process."""
from __future__ import annotations

import pytest

from pipeline.store.engine import get_engine, normalize_url


@pytest.mark.parametrize("url", ["postgresql://u:p@db:5432/fb", "postgres://u:p@db:5432/fb",
                                 "postgresql+psycopg://u:p@db:5432/fb"])
def test_plain_urls_use_psycopg_3(url):
    assert normalize_url(url) == "postgresql+psycopg://u:p@db:5432/fb"


def test_a_psycopg2_url_uses_psycopg_3_even_where_psycopg2_is_installed(monkeypatch):
    import importlib.util

    # Given a URL written for psycopg2 (as many deployments have them), on a host where psycopg2 is installed
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "psycopg2" else real(name, *a))
    import pipeline.store.engine as engine_module

    if hasattr(engine_module, "find_spec"):
        monkeypatch.setattr(engine_module, "find_spec", importlib.util.find_spec)
    # Then it is driven by psycopg 3 all the same: job creation uses psycopg 3's COPY, which psycopg2 lacks
    assert normalize_url("postgresql+psycopg2://u:p@db/fb") == "postgresql+psycopg://u:p@db/fb"


@pytest.mark.parametrize("url", ["postgresql+asyncpg://u@db/fb", "mysql://u@db/fb", "sqlite:///fb.db"])
def test_a_database_url_for_another_driver_is_refused_at_start(url):
    from pipeline.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings({"DATABASE_URL": url})


def test_one_engine_per_process_and_url(settings):
    assert get_engine(settings.database_url) is get_engine(settings.database_url)
