"""The local stack's development credentials (its API key and Flower password), kept in the data folder.

Each `fashion-batch up` of one data folder reuses them, so the jobs made before a restart stay reachable with the
same key and Flower's login does not change. `fashion-batch keys rotate` makes a new key.
"""
from __future__ import annotations

import json
import secrets
from pathlib import Path

from sqlalchemy import Engine

from pipeline.settings import Settings
from pipeline.store.keys import authenticate, create_key, revoke_key

DEV_KEY_NAME = "dev"


def _path(settings: Settings) -> Path:
    return settings.data_dir / "run" / "dev-credentials.json"


def _read(settings: Settings) -> dict:
    try:
        return json.loads(_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _write(settings: Settings, creds: dict) -> None:
    path = _path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(creds, indent=2))
    tmp.chmod(0o600)  # a key and a password
    tmp.replace(path)


def dev_credentials(settings: Settings, engine: Engine) -> tuple[str, str]:
    """(API key, Flower password) of the local stack: those of the last start of this data folder while the key
    is live in its database, else new ones (FB_FLOWER_PASSWORD, when set, is the password)."""
    creds = _read(settings)
    key = creds.get("api_key")
    if not key or authenticate(engine, key) is None:
        key = rotate(settings, engine)
        creds = _read(settings)
    password = settings.flower_password or creds.get("flower_password") or secrets.token_urlsafe(12)
    if creds.get("flower_password") != password:
        _write(settings, {**creds, "flower_password": password})
    return key, password


def rotate(settings: Settings, engine: Engine) -> str:
    """Revoke the development key and make a new one (kept for the next starts); return it."""
    revoke_key(engine, DEV_KEY_NAME)
    _, key = create_key(engine, DEV_KEY_NAME)
    _write(settings, {**_read(settings), "api_key": key})
    return key
