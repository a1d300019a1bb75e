"""pipeline.store.engine: database URLs name their driver; engines are per process."""
from __future__ import annotations

from importlib.util import find_spec

import pytest

from pipeline.store.engine import get_engine, normalize_url


@pytest.mark.parametrize("url", ["postgresql://u:p@db:5432/fb", "postgres://u:p@db:5432/fb",
                                 "postgresql+psycopg://u:p@db:5432/fb"])
def test_plain_urls_use_psycopg_3(url):
    assert normalize_url(url) == "postgresql+psycopg://u:p@db:5432/fb"


def test_a_psycopg2_url_works_with_or_without_psycopg2():
    # Given a URL written for psycopg2 (as many deployments have them)
    url = normalize_url("postgresql+psycopg2://u:p@db/fb")
    # Then it keeps psycopg2 where that is installed, and falls back to psycopg 3 where it is not
    expected = "postgresql+psycopg2" if find_spec("psycopg2") else "postgresql+psycopg"
    assert url == f"{expected}://u:p@db/fb"


def test_one_engine_per_process_and_url(settings):
    assert get_engine(settings.database_url) is get_engine(settings.database_url)
