"""Every error is JSON with an `error` message; nothing leaks a stack trace."""
from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answer with a status code, a message and optional headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def register(app: Flask) -> None:
    """Install the JSON error handlers on `app`."""

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError):
        return jsonify(error=exc.message), exc.status, exc.headers

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        limit = request.max_content_length  # the app's MAX_CONTENT_LENGTH, or a view's own (JSON bodies)
        msg = f"upload too large: the limit is {limit:,} bytes" if limit else "upload too large"
        if request.content_length and limit and request.content_length <= limit:
            msg = (f"too many parts (at most {app.config.get('MAX_FORM_PARTS')}) or a form field over "
                   f"{app.config.get('MAX_FORM_MEMORY_SIZE'):,} bytes")
        return jsonify(error=msg), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 404 and request.url_rule is None and request.path.startswith("/v1/jobs/"):
            # /v1/jobs/<not a UUID>: say what a job id is, rather than Flask's "URL not found" page text
            given = request.path.split("/")[3]
            return jsonify(error=f"no job {given!r}: a job id is a UUID, as POST /v1/jobs answered it"), 404
        if exc.code == 404 and request.url_rule is None:
            return jsonify(error=f"no such endpoint: {request.method} {request.path} (see /docs)"), 404
        return jsonify(error=exc.description or exc.name), exc.code

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify(error="internal server error"), 500
