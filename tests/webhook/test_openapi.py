"""The OpenAPI 3.1 description: valid, complete, served, and the live API keeps to it (schemathesis)."""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.specs.openapi.checks import positive_data_acceptance

from webhook.openapi import build_spec


def test_the_description_is_valid_openapi_3_1_and_covers_every_route(app):
    # Given the app's routes / When the description is built (a route without one raises)
    spec = build_spec(app)
    # Then it is valid OpenAPI 3.1, and every route of the app is in it
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    routes = {r.rule.replace("<uuid:job_id>", "{job_id}") for r in app.url_map.iter_rules() if r.endpoint != "static"}
    assert routes == set(spec["paths"])


def test_it_is_served_with_a_docs_page(client):
    spec = client.get("/openapi.json").get_json()
    page = client.get("/docs").get_data(as_text=True)
    assert spec["info"]["title"] == "fashion-batch"
    assert all(path in page for path in spec["paths"]) and "<script" not in page


def test_the_live_api_keeps_to_its_description(app, live_url, api_key):
    # Given generated requests for every operation (bounded: a few examples each, no example database)
    schema = schemathesis.openapi.from_dict(build_spec(app))
    tried = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, database=None, derandomize=True,  # the same cases each run
                  suppress_health_check=list(HealthCheck))
        def check(case):
            # When each is sent to the running service with a valid key / Then no answer is a server error,
            # and every answer matches the status codes, content types and schemas described
            # (A schema-valid upload may still be refused for its content, e.g. random bytes that are no image:
            # that check is left out.)
            case.call_and_validate(base_url=live_url, headers={"X-API-Key": api_key},
                                   excluded_checks=[positive_data_acceptance])

        check()
        tried.append(operation.label)
    assert len(tried) >= 12, tried
