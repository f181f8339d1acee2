"""Schemathesis over the served OpenAPI document, with a token for each role: every operation
gets a few generated requests (a fixed seed, so every run sends the same ones), and no answer
may be a server error or differ from what the document says (status, media type, body)."""

import asyncio

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (content_type_conformance,
                                               response_schema_conformance,
                                               status_code_conformance)

from models.access import STAFF_ROLES
from tests.builders import make_community, make_platform_admin, make_resident
from tests.gate_fixtures import hub  # noqa: F401 (fixture: remote opens reach a real hub)

pytestmark = pytest.mark.asyncio
EXAMPLES = 2  # per operation and role: ~110 operations x 8 callers, 1-2 min on 2 cores
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
# Answers that stream (the live feed) are not for a request/response fuzzer.
SKIPPED = ("/feed",)


def pinned(document: dict, values: dict[str, str]) -> dict:
    """The document with the named path parameters fixed to real ids, so requests reach the
    handlers' own checks instead of stopping at "community not found"."""
    for item in document["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []) if isinstance(operation, dict) else []:
                if parameter.get("in") == "path" and parameter["name"] in values:
                    parameter["schema"] = {"type": "string", "enum": [values[parameter["name"]]]}
    return document


def fuzz(document: dict, base_url: str, token: str) -> list[str]:
    """Run every operation's examples (blocking: called in a thread while the loop serves)."""
    failures: list[str] = []
    for result in schemathesis.openapi.from_dict(document).get_all_operations():
        operation = result.ok()
        if any(part in operation.path for part in SKIPPED):
            continue

        documented = document["paths"][operation.path][operation.method.lower()]["responses"]

        def no_server_error(ctx, response, case, documented=documented):
            """Never 500; another 5xx only where the document promises it (503: a store or the
            gate hub is down; 504: the gate's bridge did not answer)."""
            status = response.status_code
            if status == 500 or (status > 500 and str(status) not in documented):
                raise AssertionError(f"server error {status}: {response.text[:300]}")

        @given(case=operation.as_strategy())
        @hsettings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                   phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck))
        def run(case):
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"},
                                 timeout=30)
            try:
                case.validate_response(response, checks=[no_server_error, *CHECKS])
            except FailureGroup as exc:  # each failure is collected, the run goes on
                failures.append(f"{operation.label} -> {response.status_code}: {exc}"[:2000])
        run()
    return failures


# Schemathesis's strategies draw from `random` (Hypothesis deprecates that, not an error of ours).
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
async def test_every_operation_for_every_role_answers_as_documented(app, hub, api_client,
                                                                   base_url):
    c = await make_community(app, "fuzz")
    await app.bridges.provision(c.id, c.gates["main"], c.staff["admin"])  # never connected
    _, resident = await make_resident(app, c, "fuzz-r")
    callers = {**{role: c.tokens[role] for role in STAFF_ROLES}, "resident": resident,
               "platform_admin": await make_platform_admin(app, "fuzz-platform")}
    document = (await api_client.get("/api/openapi.json")).body
    document = pinned(document, {"community_id": c.id, "gate_id": c.gates["main"]})
    failures = {}
    for name, token in callers.items():
        failures[name] = await asyncio.to_thread(fuzz, document, base_url, token)
    assert not any(failures.values()), "\n".join(
        f"[{name}] {line}" for name, lines in failures.items() for line in lines)
