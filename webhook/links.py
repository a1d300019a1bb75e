"""Absolute URLs handed to clients (status, results, job page), built from FB_PUBLIC_URL.

Never from the request's Host header, which any client can set: production requires FB_PUBLIC_URL (checked
at start). Without it, in development and tests, the URL the request came in on is used.
"""
from __future__ import annotations

from flask import url_for

from webhook.extensions import services


def external_url(endpoint: str, **values: object) -> str:
    """The absolute URL of `endpoint` as clients reach it."""
    public = services().settings.public_url
    if public:
        return public.rstrip("/") + url_for(endpoint, **values)
    return url_for(endpoint, _external=True, **values)
