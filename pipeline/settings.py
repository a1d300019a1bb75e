"""One typed settings object (pydantic-settings), read from the environment by `load_settings` only.

`load_settings()` is the one place that reads environment variables; everything else is handed a
`Settings`. A malformed value is a `SettingsError` at start that names the variable.
"""
from __future__ import annotations

import contextvars
import hashlib
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping

from pydantic import (
    AliasChoices,
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

BACKENDS: tuple[str, ...] = ("eager", "torchscript", "onnx", "int8")
# The default backend, in order of preference, where FB_DEFAULT_BACKEND is not set (Settings.default_backend).
DEFAULT_ORDER: tuple[str, ...] = ("int8", "onnx", "torchscript", "eager")
POOLS: tuple[str, ...] = ("cpu", "gpu")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "admin", "password"}
# The mapping `load_settings` reads; unset, a Settings() built directly takes defaults and arguments only.
_ENVIRON: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("fb_environ", default=None)

Names = Annotated[tuple[str, ...], NoDecode]  # "eager,onnx" in the environment, not JSON


class SettingsError(ValueError):
    """A setting is missing, malformed or unsafe for the environment it runs in."""


class _EnvironSource(EnvSettingsSource):
    """Environment variables from the mapping `load_settings` was given (os.environ by default)."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        env = _ENVIRON.get()
        return {} if env is None else parse_env_vars(env, self.case_sensitive, self.env_ignore_empty,
                                                      self.env_parse_none_str)


class _FromEnviron(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FB_", env_ignore_empty=True, frozen=True, extra="ignore")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):  # noqa: D102 - pydantic-settings hook
        return (init_settings, _EnvironSource(settings_cls))

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_with_underscores(cls, value: Any, info: ValidationInfo) -> Any:
        # "2_000_000" reads as it would in Python, for whole-number settings only.
        if (isinstance(value, str) and cls.model_fields[info.field_name].annotation in (int, "int")
                and value.replace("_", "").isdigit()):
            return value.replace("_", "")
        return value


class Limits(_FromEnviron):
    """Bounds on what one upload may cost; every hostile-input check reads them from here (FB_MAX_...)."""

    max_upload_bytes: int = 2 * 1024**3  # whole request body
    max_parts: int = 1000  # multipart parts (files) per request
    max_zip_entries: int = 50_000
    max_entry_bytes: int = 64 * 1024**2  # actually decompressed, per archive member
    max_total_bytes: int = 8 * 1024**3  # actually decompressed, whole upload
    max_ratio: int = 250  # decompressed / compressed, per member past its first MiB (deflate tops out near 1032)
    max_pixels: int = 50_000_000
    max_items: int = 200_000  # images per job


class Settings(_FromEnviron):
    """Everything the web service, the workers, the CLI and the launcher need to know (README: Settings)."""

    env: Literal["development", "test", "production"] = "development"
    database_url: str | None = Field(None, validation_alias=AliasChoices("DATABASE_URL"))  # None: embedded
    redis_url: str | None = Field(None, validation_alias=AliasChoices("REDIS_URL"))  # None: embedded
    data_dir: Path = PROJECT_ROOT / ".data"
    storage_dir: Path | None = None  # None: data_dir / "storage"
    # Where uploads live between the web service and the workers (README: Storage): file://DIR (default:
    # file://<storage_dir>) or s3://BUCKET/PREFIX. With s3, storage_dir is only each host's own scratch.
    storage_url: str | None = None
    s3_endpoint_url: str | None = None  # None: AWS; set for SeaweedFS, MinIO, ... (credentials: AWS_* variables)
    s3_region: str = "us-east-1"
    # Buckets that POST /v1/jobs {"source": "s3://BUCKET/PREFIX/"} may read; anything else is refused (400).
    s3_source_buckets: Names = ()
    weights_dir: Path = PROJECT_ROOT / "weights"
    fashion_mnist_dir: Path | None = None  # training and evaluation data; None: ../shared/datasets/fashion-mnist
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    public_url: str | None = None  # base URL clients see (required in production); links are built from it
    url: str | None = None  # FB_URL: the service the CLI talks to (default: the local stack)
    api_key: str | None = None  # FB_API_KEY: the CLI's key (default: the local stack's development key)
    flower_port: int = 5555
    flower_user: str = "admin"
    flower_password: str | None = None  # None in development: generated by the launcher
    secret_key: str | None = None  # signs job-page links; required in production
    metrics_token: str | None = None  # if set, /metrics needs "Authorization: Bearer <token>"
    # A job that names no backend gets FB_DEFAULT_BACKEND if set, else the first of DEFAULT_ORDER its pool serves:
    # INT8 on CPU (its accuracy is within 0.3 points of fp32 on Fashion-MNIST and realphoto-dev, and it infers
    # 2.7x faster: README, Performance), ONNX on GPU.
    default_backend: str | None = None
    cpu_backends: Names = BACKENDS
    gpu_backends: Names = ("eager", "torchscript", "onnx")
    worker_pool: Literal["cpu", "gpu", "control"] = "cpu"  # the pool a worker serves; control: no models
    pin_model_version: bool = True  # a job is finished by the weights that labelled its first chunk
    preload_backends: Names = ()  # loaded when a worker process starts; the others on first use
    infer_threads: int = 1  # intra-op threads per worker process
    # Measured with `fashion-batch bench` (2 cores, 10,000 photos): 512 beat 256 and 128 on throughput, and a
    # first chunk of 16 brings the first result ~50 ms sooner than 32 at no cost (README: Performance).
    chunk_size: int = 512
    first_chunk_size: int = 16  # a small first chunk brings the first result quickly
    # 0: one process per core plus one, which fills the gaps while a process waits on PostgreSQL, Redis or the
    # store (measured: 713 against 648 img/s with 2 on 2 cores, 639 with 4; README: Performance)
    worker_concurrency: int = 0
    task_time_limit_s: int = 300  # hard limit per chunk; a hung decoder is killed and its chunk retried
    visibility_timeout_s: int = 900  # must exceed task_time_limit_s (checked at start-up)
    max_chunk_attempts: int = 3  # lost attempts before a chunk is bisected, or a single image failed as poison
    lease_s: float = 20.0  # a worker's hold on a chunk, renewed while it works; lapsed, another takes over
    item_time_limit_s: float = 30.0  # decode + preprocess of one image; past it that image alone fails
    drain_budget_s: float = 60.0  # a worker process takes chunks for this long per wake-up, then hands over
    wakeups: int = 8  # wake-up messages kept waiting per pool while it has claimable chunks
    dispatch_every_s: float = 2.0  # how often beat tops up the wake-ups (the stranded-job safety net)
    interactive_max_images: int = 100  # jobs this small are interactive unless they say otherwise
    reconcile_every_s: float = 30.0
    beat_lock_timeout_s: int = 15  # a killed beat's stand-by takes over within this
    benchmark_every_s: float = 3600.0
    rate_limit_per_minute: int = 60  # job submissions per API key
    queue_without_workers: bool = False  # accept jobs for a pool no live worker serves (autoscaled fleets)
    keep_uploads: bool = False  # keep spooled uploads after a job ends (they are deleted by default)
    retention_days: float = 30.0  # jobs, their results and uploads are purged this long after they end
    storage_retry_s: float = 15.0  # a chunk whose uploads cannot be read is given back for this long
    storage_outage_s: float = 3600.0  # ... and once they have been unreadable this long, its items fail
    orphan_after_s: float = 3600.0  # spooled files no job owns (a crashed request, a lost clean-up) go after this
    housekeeping_every_s: float = 3600.0
    callback_allow_private: bool = False
    callback_timeout_s: float = 10.0
    callback_max_attempts: int = 8
    # prometheus_client's own variable: gunicorn's processes share HTTP metrics through files there.
    prometheus_multiproc_dir: Path | None = Field(None, validation_alias=AliasChoices("PROMETHEUS_MULTIPROC_DIR"))
    # Test environment only (FB_ENV=test): items whose name contains the marker kill or hang their worker process.
    fault_crash_on: str | None = None
    fault_hang_on: str | None = None
    limits: Limits = Field(default_factory=Limits)

    @field_validator("cpu_backends", "gpu_backends", "preload_backends", "s3_source_buckets", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(x.strip() for x in value.split(",") if x.strip())
        return value

    @field_validator("data_dir", "storage_dir", "weights_dir", "fashion_mnist_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser().resolve()

    def model_post_init(self, _context: Any) -> None:
        if self.storage_dir is None:
            object.__setattr__(self, "storage_dir", self.data_dir / "storage")

    @property
    def signing_key(self) -> bytes:
        """The key for signed links; outside production a fixed one per data folder is good enough."""
        if self.secret_key:
            return self.secret_key.encode()
        return hashlib.sha256(f"fashion-batch-development:{self.data_dir}".encode()).digest()

    @property
    def blob_url(self) -> str:
        """Where uploads are kept: FB_STORAGE_URL, else the local storage folder as a file:// URL."""
        return self.storage_url or self.storage_dir.as_uri()

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.web_host}:{self.web_port}").rstrip("/")

    @property
    def pool_processes(self) -> int:
        """Processes of a CPU worker (FB_WORKER_CONCURRENCY, or cores + 1)."""
        return self.worker_concurrency or (os.cpu_count() or 1) + 1

    def backends_for(self, pool: str) -> tuple[str, ...]:
        """The backends a worker of `pool` loads and serves."""
        return self.cpu_backends if pool == "cpu" else self.gpu_backends

    def default_backend_for(self, pool: str) -> str:
        """The backend of a job on `pool` that names none (see `default_backend`)."""
        if self.default_backend:
            return self.default_backend
        served = self.backends_for(pool)
        return next((b for b in DEFAULT_ORDER if b in served), served[0] if served else "onnx")

    def replace(self, **changes: object) -> "Settings":
        """A copy with `changes` applied (tests and the launcher derive settings this way)."""
        return self.model_copy(update=changes)


def _variable(model: type[BaseModel], field: str) -> str:
    info = model.model_fields.get(field)
    alias = getattr(info, "validation_alias", None) if info else None
    return alias.choices[0] if isinstance(alias, AliasChoices) else f"FB_{field.upper()}"


def _error(exc: ValidationError, model: type[BaseModel]) -> SettingsError:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        lines.append(f"{_variable(model, field)}: {err['msg'].lower()}, got {err.get('input')!r}")
    return SettingsError("; ".join(lines))


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build and validate Settings from environment variables (`env`, or os.environ; README: Settings)."""
    token = _ENVIRON.set(os.environ if env is None else env)
    try:
        try:
            limits = Limits()
        except ValidationError as exc:
            raise _error(exc, Limits) from None
        try:
            s = Settings(limits=limits)
        except ValidationError as exc:
            raise _error(exc, Settings) from None
    finally:
        _ENVIRON.reset(token)
    validate(s)
    return s


def validate(s: Settings) -> None:
    """Refuse settings that cannot work, and placeholder secrets outside development."""
    named = [s.default_backend] if s.default_backend else []
    unknown = [b for b in (*named, *s.cpu_backends, *s.gpu_backends, *s.preload_backends) if b not in BACKENDS]
    if unknown:
        raise SettingsError(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    if "int8" in s.gpu_backends:
        raise SettingsError("the int8 backend runs on CPU only; remove it from FB_GPU_BACKENDS")
    if s.visibility_timeout_s <= s.task_time_limit_s:
        raise SettingsError(
            f"FB_VISIBILITY_TIMEOUT_S ({s.visibility_timeout_s}) must exceed FB_TASK_TIME_LIMIT_S "
            f"({s.task_time_limit_s}), or Redis redelivers chunks that are still running"
        )
    if s.chunk_size < 1 or s.first_chunk_size < 1:
        raise SettingsError("FB_CHUNK_SIZE and FB_FIRST_CHUNK_SIZE must be at least 1")
    if s.drain_budget_s >= s.task_time_limit_s:
        raise SettingsError(f"FB_DRAIN_BUDGET_S ({s.drain_budget_s:g}) must be shorter than FB_TASK_TIME_LIMIT_S "
                            f"({s.task_time_limit_s}): a worker hands over before its task's hard limit")
    if s.lease_s < 3 * 1.0 or s.item_time_limit_s <= 0:
        raise SettingsError("FB_LEASE_S must be at least 3 s and FB_ITEM_TIME_LIMIT_S positive")
    if not s.blob_url.startswith(("file:///", "s3://")):
        raise SettingsError(f"FB_STORAGE_URL must be file:///DIR or s3://BUCKET/PREFIX, got {s.storage_url!r}")
    if s.blob_url.startswith("s3://") and not s.blob_url[5:].split("/", 1)[0]:
        raise SettingsError(f"FB_STORAGE_URL names no bucket: {s.storage_url!r}")
    scheme = (s.database_url or "postgresql://").partition("://")[0]
    if scheme not in ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2"):
        raise SettingsError(f"DATABASE_URL must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST/DB, driven by "
                            f"psycopg 3), got a {scheme}:// one")
    if s.infer_threads < 1:
        raise SettingsError("FB_INFER_THREADS must be at least 1")
    if s.env == "production":
        # A secret a process is given must be real; which secrets a process needs is `require`'s business.
        if s.flower_password is not None and s.flower_password.lower() in _PLACEHOLDERS:
            raise SettingsError("production needs a real FB_FLOWER_PASSWORD, not a placeholder")
        if s.secret_key is not None and (s.secret_key.lower() in _PLACEHOLDERS or len(s.secret_key) < 16):
            raise SettingsError("production needs FB_SECRET_KEY: at least 16 random characters")


# What each process needs in production: each container is given only these (docker-compose.yml).
ROLES: dict[str, tuple[str, ...]] = {
    "web": ("database_url", "redis_url", "secret_key", "public_url"),
    "worker": ("database_url", "redis_url"),
    "beat": ("redis_url",),
    "flower": ("redis_url", "flower_password"),
    "migrate": ("database_url",),
}
_VARIABLES = {"database_url": "DATABASE_URL", "redis_url": "REDIS_URL", "secret_key": "FB_SECRET_KEY",
              "public_url": "FB_PUBLIC_URL (the URL clients reach the API at; links are never built from a Host "
                            "header)", "flower_password": "FB_FLOWER_PASSWORD"}


def require(s: Settings, role: str) -> None:
    """In production, refuse to start a `role` process that lacks a setting it needs (no embedded servers)."""
    if s.env != "production":
        return
    missing = [_VARIABLES[name] for name in ROLES[role] if not getattr(s, name)]
    if missing:
        raise SettingsError(f"production {role} needs {' and '.join(missing)}")
