"""The API's OpenAPI 3.1 description, built from the app's own routes, at `/openapi.json`; a docs page at `/docs`.

Paths, methods and path parameters come from Flask's URL map, so a route cannot be left out or misspelt
(a test checks that every route is described); what each operation takes and answers is written here,
beside the JSON schemas, and assembled with apispec.
"""
from __future__ import annotations

import re

from apispec import APISpec
from flask import Blueprint, Flask, current_app, jsonify, render_template

bp = Blueprint("openapi", __name__)

ERROR = {"description": "a JSON error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_KEY = [{"ApiKey": []}]


def _json(schema: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _page_params(max_limit: int) -> list[dict]:
    return [{"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}},
            {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": max_limit}}]


NULLABLE_STR = {"type": ["string", "null"]}
SCHEMAS: dict[str, dict] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Job": {"type": "object", "required": ["id", "status", "total", "done", "failed", "status_url"], "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"enum": ["queued", "running", "succeeded", "partial", "failed", "cancelled"]},
        "total": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"},
        "cancelled": {"type": "integer"},
        "backend": {"type": "string"}, "pool": {"type": "string"}, "priority": {"enum": ["interactive", "bulk"]},
        "not_before": NULLABLE_STR, "created_at": {"type": "string"}, "started_at": NULLABLE_STR,
        "finished_at": NULLABLE_STR, "status_url": {"type": "string"}, "results_url": {"type": "string"},
        "page_url": {"type": "string"}, "queued_behind": {"type": "integer"}, "waiting_for": {"type": "string"},
        "model_versions": {"type": "object", "additionalProperties": {"type": "integer"}},
        "model_note": {"type": "string"},
        "accuracy": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Accuracy"}]}}},
    "Accuracy": {"type": "object", "properties": {
        "labelled": {"type": "integer"}, "correct": {"type": "integer"}, "failed": {"type": "integer"},
        "accuracy": {"type": "number"}, "classes": {"type": "array", "items": {"type": "string"}},
        "confusion": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}},
        "per_class": {"type": "array", "items": {"type": "object"}}}},
    "JobList": {"type": "object", "properties": {"offset": {"type": "integer"}, "limit": {"type": "integer"},
                                                 "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}},
    "Result": {"type": "object", "properties": {
        "name": {"type": "string"}, "label": {"type": ["integer", "null"]}, "class_name": NULLABLE_STR,
        "confidence": {"type": ["number", "null"]},
        "probabilities": {"type": ["array", "null"], "items": {"type": "number"}}, "error": NULLABLE_STR,
        "true_label": {"type": ["integer", "null"]}, "true_class_name": NULLABLE_STR,
        "model_version": NULLABLE_STR, "outcome": {"enum": ["labelled", "failed", "cancelled", "pending"]}}},
    "ResultPage": {"type": "object", "properties": {
        "id": {"type": "string"}, "status": {"type": "string"}, "total": {"type": "integer"},
        "offset": {"type": "integer"}, "limit": {"type": "integer"}, "next": NULLABLE_STR,
        "items": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}}}},
    "Classification": {"type": "object", "properties": {
        "name": {"type": "string"}, "label": {"type": "integer"}, "class_name": {"type": "string"},
        "confidence": {"type": "number"}, "probabilities": {"type": "array", "items": {"type": "number"}}}},
    "Benchmarks": {"type": "object", "properties": {"latest": {"type": "array", "items": {"type": "object"}},
                                                    "history": {"type": "array", "items": {"type": "object"}}}},
    "Health": {"type": "object", "properties": {"status": {"type": "string"}, "database": {"type": "string"},
                                                "broker": {"type": "string"}}},
}

UPLOAD = {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"], "properties": {
        "files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
                  "description": "images (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC, AVIF) and ZIP archives"},
        "backend": {"enum": ["eager", "torchscript", "onnx", "int8"]}, "pool": {"enum": ["cpu", "gpu"]},
        "callback_url": {"type": "string"}, "priority": {"enum": ["interactive", "bulk"]},
        "not_before": {"type": "string", "description": "ISO 8601: nothing is classified before it"}}}}}}

# What each endpoint does, keyed by Flask endpoint, then by method.
OPERATIONS: dict[str, dict[str, dict]] = {
    "api.create_job": {"post": {
        "summary": "Submit images and ZIP archives as one job", "security": _KEY, "requestBody": UPLOAD,
        "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255}}],
        "responses": {"202": _json("Job", "accepted: recorded and queued"),
                      "200": _json("Job", "the same Idempotency-Key and upload as before: that job"),
                      "400": ERROR, "401": ERROR, "413": ERROR, "422": ERROR, "429": ERROR, "503": ERROR}}},
    "api.list_jobs": {"get": {"summary": "This key's jobs, newest first", "security": _KEY,
                              "parameters": _page_params(200),
                              "responses": {"200": _json("JobList", "jobs"), "400": ERROR, "401": ERROR}}},
    "api.get_job": {"get": {"summary": "A job's status, progress and (once ended, if labelled) accuracy",
                            "security": _KEY, "responses": {"200": _json("Job", "the job"), "401": ERROR,
                                                             "404": ERROR}}},
    "api.cancel_job": {"delete": {"summary": "Cancel a job", "security": _KEY,
                                  "responses": {"200": _json("Job", "cancelled"), "401": ERROR, "404": ERROR,
                                                "409": ERROR}}},
    "api.get_results": {"get": {
        "summary": "Results in upload order (JSON pages, or CSV)", "security": _KEY,
        "parameters": [*_page_params(10_000), {"name": "format", "in": "query", "schema": {"enum": ["json", "csv"]}}],
        "responses": {"200": {**_json("ResultPage", "a page of results"),
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ResultPage"}},
                                          "text/csv": {"schema": {"type": "string"}}}},
                      "400": ERROR, "401": ERROR, "404": ERROR}}},
    "classify.classify_one": {"post": {
        "summary": "Classify one image synchronously", "security": _KEY,
        "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": ["file"], "properties": {"file": {"type": "string", "format": "binary"}}}}}},
        "responses": {"200": _json("Classification", "its label"), "400": ERROR, "401": ERROR, "413": ERROR,
                      "503": ERROR}}},
    "benchmarks.list_benchmarks": {"get": {
        "summary": "Periodic backend benchmarks: latest per pool and backend, and history", "security": _KEY,
        "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1}},
                       {"name": "pool", "in": "query", "schema": {"type": "string", "maxLength": 100}},
                       {"name": "backend", "in": "query", "schema": {"type": "string", "maxLength": 100}}],
        "responses": {"200": _json("Benchmarks", "benchmarks"), "400": ERROR, "401": ERROR}}},
    "health.healthz": {"get": {"summary": "Liveness of PostgreSQL and Redis",
                               "responses": {"200": _json("Health", "both answer"), "503": _json("Health", "one does not")}}},
    "metrics.metrics": {"get": {"summary": "Prometheus metrics",
                                "responses": {"200": {"description": "text exposition format",
                                                      "content": {"text/plain": {"schema": {"type": "string"}}}},
                                              "401": ERROR}}},
    "pages.job_page": {"get": {
        "summary": "A job's page for people (the signed link is the job's page_url)",
        "parameters": [{"name": "t", "in": "query", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                      "404": ERROR}}},
    "openapi.openapi_json": {"get": {"summary": "This description",
                                     "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                                         "application/json": {"schema": {"type": "object"}}}}}}},
    "openapi.docs": {"get": {"summary": "This description, for people",
                             "responses": {"200": {"description": "HTML", "content": {
                                 "text/html": {"schema": {"type": "string"}}}}}}},
}

_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")


def _path(rule: str) -> tuple[str, list[dict]]:
    """`/v1/jobs/<uuid:job_id>` -> (`/v1/jobs/{job_id}`, its path parameters)."""
    params = [{"name": name, "in": "path", "required": True,
               "schema": {"type": "string", "format": "uuid"} if conv == "uuid" else {"type": "string"}}
              for conv, name in _CONVERTER.findall(rule)]
    return _CONVERTER.sub(lambda m: "{" + m.group(2) + "}", rule), params


def build_spec(app: Flask) -> dict:
    """The OpenAPI 3.1 document for every route of `app` (a route without a description is an error)."""
    spec = APISpec(title="fashion-batch", version="1", openapi_version="3.1.0",
                   info={"description": "Batch classification of clothing photos into the Fashion-MNIST classes."})
    spec.components.security_scheme("ApiKey", {"type": "apiKey", "in": "header", "name": "X-API-Key"})
    for name, schema in SCHEMAS.items():
        spec.components.schema(name, schema)
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        ops = OPERATIONS.get(rule.endpoint)
        if ops is None:
            raise KeyError(f"route {rule.rule} ({rule.endpoint}) has no OpenAPI description in webhook/openapi.py")
        path, params = _path(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            op = dict(ops[method.lower()])
            op["operationId"] = rule.endpoint.replace(".", "_") + ("" if len(ops) == 1 else f"_{method.lower()}")
            op["parameters"] = params + op.get("parameters", [])
            paths.setdefault(path, {})[method.lower()] = op
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


def _spec() -> dict:
    """This app's description, built once."""
    ext = current_app.extensions
    if "fashion_batch_openapi" not in ext:
        ext["fashion_batch_openapi"] = build_spec(current_app)
    return ext["fashion_batch_openapi"]


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI 3.1 description of this API."""
    return jsonify(_spec())


@bp.get("/docs")
def docs():
    """The same, as a page for people (no scripts, nothing fetched from elsewhere)."""
    return render_template("docs.html", spec=_spec())
