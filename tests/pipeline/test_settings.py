"""Settings: read from the environment by a function, validated."""
from __future__ import annotations

import pytest

from pipeline.settings import SettingsError, load_settings


def test_defaults_need_nothing_but_are_overridable():
    s = load_settings({})
    assert s.database_url is None and s.redis_url is None
    # The photo model by default; its weights in FB_WEIGHTS_DIR/<model>/
    assert s.default_model == "photo" and s.gpu_fallback == "none"
    # A model's own preference (its manifest's `serving`) per pool, unless FB_DEFAULT_BACKEND says otherwise
    fmnist = {"cpu": "int8", "gpu": "onnx"}
    assert (s.default_backend_for("cpu", fmnist), s.default_backend_for("gpu", fmnist)) == ("int8", "onnx")
    assert s.replace(default_backend="eager").default_backend_for("gpu", fmnist) == "eager"
    # A model that names none: ONNX on CPU, eager (fp16 on CUDA) on GPU; a pool serving neither falls back
    assert (s.default_backend_for("cpu"), s.default_backend_for("gpu")) == ("onnx", "eager")
    assert s.replace(cpu_backends=("int8", "eager")).default_backend_for("cpu") == "int8"
    assert s.replace(cpu_backends=("onnx",)).default_backend_for("cpu", fmnist) == "onnx"
    s = load_settings({"DATABASE_URL": "postgresql://u@h/db", "FB_CHUNK_SIZE": "64", "FB_MAX_ZIP_ENTRIES": "10"})
    assert s.database_url == "postgresql://u@h/db" and s.chunk_size == 64 and s.limits.max_zip_entries == 10


@pytest.mark.parametrize("env, message", [
    ({"FB_DEFAULT_BACKEND": "tensorrt"}, "unknown backend"),
    ({"FB_GPU_BACKENDS": "eager,int8"}, "CPU only"),
    ({"FB_TASK_TIME_LIMIT_S": "600", "FB_VISIBILITY_TIMEOUT_S": "300"}, "VISIBILITY_TIMEOUT"),
    ({"FB_CHUNK_SIZE": "many"}, "FB_CHUNK_SIZE: input should be a valid integer"),
    ({"FB_KEEP_UPLOADS": "ture"}, "FB_KEEP_UPLOADS: input should be a valid boolean"),  # a typo is not "false"
    ({"FB_WORKER_POOL": "tpu"}, "FB_WORKER_POOL"),
    ({"FB_GPU_FALLBACK": "tpu"}, "FB_GPU_FALLBACK"),
    ({"FB_MAX_PARTS": "lots"}, "FB_MAX_PARTS"),
    ({"DATABASE_URL": "postgresql://x/y", "FB_ENV": "staging"}, "FB_ENV"),
    ({"FB_ENV": "production", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://r",
      "FB_FLOWER_PASSWORD": "changeme", "FB_SECRET_KEY": "a" * 32}, "FLOWER_PASSWORD"),
    ({"FB_ENV": "production", "DATABASE_URL": "postgresql://x/y", "REDIS_URL": "redis://r",
      "FB_FLOWER_PASSWORD": "s3cr3t-enough", "FB_SECRET_KEY": "short"}, "SECRET_KEY"),
])
def test_unworkable_or_unsafe_settings_are_refused(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_only_load_settings_reads_the_environment(monkeypatch):
    # Given a variable in the process environment
    monkeypatch.setenv("FB_CHUNK_SIZE", "7")
    # Then Settings built directly take defaults and arguments only; load_settings reads the environment
    from pipeline.settings import Settings

    assert Settings().chunk_size == 512 and Settings(chunk_size=9).chunk_size == 9
    assert load_settings().chunk_size == 7
    # And whole numbers may be written with underscores, lists with commas
    s = load_settings({"FB_MAX_UPLOAD_BYTES": "1_000_000", "FB_CPU_BACKENDS": "onnx, int8"})
    assert s.limits.max_upload_bytes == 1_000_000 and s.cpu_backends == ("onnx", "int8")


def test_each_production_process_needs_only_its_own_secrets():
    from pipeline.settings import require

    # Given production settings with the broker only (what beat is given)
    s = load_settings({"FB_ENV": "production", "REDIS_URL": "redis://:pw@redis:6379/0"})
    # Then beat may start, and the others say exactly what they lack
    require(s, "beat")
    with pytest.raises(SettingsError, match="production web needs DATABASE_URL and FB_SECRET_KEY and FB_PUBLIC_URL"):
        require(s, "web")
    with pytest.raises(SettingsError, match="production flower needs FB_FLOWER_PASSWORD"):
        require(s, "flower")
    with pytest.raises(SettingsError, match="production worker needs DATABASE_URL"):
        require(s, "worker")
    require(load_settings({}), "web")  # development: the launcher provides what is missing
