"""Property-based tests of the whole API from its own OpenAPI document (schemathesis):
whatever a client sends — within the documented shapes or outside them — the answer is never
a 5xx, and every error is problem+json with one of the contract's codes and no trace.

The generated requests carry a valid API key (otherwise every case would stop at 401) and run
against the session's real database (SQLite or PostgreSQL), with an order pushed first so
that generated return requests can reach the service. (schemathesis' pytest integration is
not used: its lazy fixture loader does not run on pytest 9; the operations are driven with
plain Hypothesis instead.)"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error

# The contract's codes (CONTRACT.md, "Every error is RFC 9457 …").
CONTRACT_CODES = {"validation_error", "unauthorized", "forbidden", "not_found", "method_not_allowed",
                  "conflict", "invalid_transition", "not_eligible", "quantity_exceeded",
                  "idempotency_key_reused", "payload_too_large", "rate_limited", "carrier_unavailable",
                  "internal_error"}
EXAMPLES = 40


@pytest.mark.parametrize("mode", list(schemathesis.GenerationMode), ids=lambda m: m.value)
def test_every_operation_answers_without_5xx_and_with_problem_json(app, api_key, order, mode):
    """``positive``: requests the document allows; ``negative``: requests it forbids (wrong
    types, missing fields, out-of-range values), which must all be clean 4xx."""
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # the whole API, not an empty document
    auth = {"Authorization": f"Bearer {api_key}"}
    exercised = []

    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            response = case.call(headers=auth)
            case.validate_response(response, checks=[not_a_server_error])
            if response.status_code >= 400:
                where = f"{operation.label}: {response.status_code} {response.text[:300]}"
                content_type = {k.lower(): v for k, v in response.headers.items()}["content-type"][0]
                assert content_type.startswith("application/problem+json"), where
                body = response.json()
                assert body["status"] == response.status_code, where
                assert body["code"] in CONTRACT_CODES, where
                assert "Traceback" not in response.text, where

        try:
            check()
        except Unsatisfiable:
            # Negative mode: an operation without any parameter or body has nothing to break.
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
            continue
        exercised.append(operation.label)
    assert len(exercised) >= 15, exercised
