"""Settings: read from the environment by a function, validated."""
from __future__ import annotations

import pytest

from pipeline.settings import SettingsError, load_settings


def test_defaults_need_nothing_but_are_overridable():
    s = load_settings({})
    assert s.database_url is None and s.redis_url is None and s.default_backend in s.cpu_backends
    s = load_settings({"DATABASE_URL": "postgresql://u@h/db", "FB_CHUNK_SIZE": "64", "FB_MAX_ZIP_ENTRIES": "10"})
    assert s.database_url == "postgresql://u@h/db" and s.chunk_size == 64 and s.limits.max_zip_entries == 10


@pytest.mark.parametrize("env, message", [
    ({"FB_DEFAULT_BACKEND": "tensorrt"}, "unknown backend"),
    ({"FB_GPU_BACKENDS": "eager,int8"}, "CPU only"),
    ({"FB_TASK_TIME_LIMIT_S": "600", "FB_VISIBILITY_TIMEOUT_S": "300"}, "VISIBILITY_TIMEOUT"),
    ({"FB_CHUNK_SIZE": "many"}, "integer"),
    ({"FB_ENV": "production"}, "DATABASE_URL and REDIS_URL"),
    ({"FB_ENV": "production", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://r",
      "FB_FLOWER_PASSWORD": "changeme", "FB_SECRET_KEY": "a" * 32}, "FLOWER_PASSWORD"),
    ({"FB_ENV": "production", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://r",
      "FB_FLOWER_PASSWORD": "s3cr3t-enough", "FB_SECRET_KEY": "short"}, "SECRET_KEY"),
])
def test_unworkable_or_unsafe_settings_are_refused(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)
