"""Schema fuzzing: every operation in ``/openapi.json``, called through the real server on both engines with
generated input that fits the schema and input that does not, answers only what the schema documents:
never a 5xx, a body matching the declared model, a documented status code and content type, and invalid
input refused with a 4xx.

Kept small for CI (two examples per operation and mode, derandomized); ``bench/fuzz.py`` runs the same
checks in every schemathesis phase (examples, coverage, fuzzing, stateful) with many more examples.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from conftest import Server, Tenant, make_tenant

EXAMPLES = 2  # per operation and mode
# Schema-valid input may still be refused with a 422 that names the field: rules such as printable text only,
# a real host name, a future send_at, exactly one of list_id or segment_id, bounce_type only for a bounce
# or a known filter token are checked by the server but are not expressed in the generated JSON Schema. The
# opposite direction (input the schema forbids must be refused) is checked.
load_all_checks()
SKIPPED_CHECKS = {schemathesis.checks.positive_data_acceptance}


@dataclass
class FuzzRun:
    cases: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def fuzz(base_url: str, headers: dict[str, str], examples: int, include: Callable[[str], bool]) -> FuzzRun:
    """Run every check schemathesis has against every operation ``include`` accepts, in both modes."""
    checks = [c for c in CHECKS.get_all() if c not in SKIPPED_CHECKS]
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    # an over-long query string is refused with 414 URI Too Long (documented on every operation)
    rejection = schema.config.checks.negative_data_rejection
    rejection.expected_statuses = [*rejection.expected_statuses, "414"]
    run = FuzzRun()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema fails here, as it should
        if not include(operation.label):
            continue
        modes = [GenerationMode.POSITIVE]
        if len(operation.query) or len(operation.body):  # path ids are free text: nothing to get wrong
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def check(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
                run.cases += 1
                case.call_and_validate(headers=headers, checks=checks)  # type: ignore[arg-type]

            try:
                check()
            except Unsatisfiable:
                pass  # every generated invalid input was filtered out: none exists
            except (Exception, BaseExceptionGroup) as exc:  # collected, reported together below
                run.failures[f"{operation.label} ({mode.value})"] = _describe(exc)
    return run


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return str(exc) + "".join(f"\n  - {type(e).__name__}: {e}"[:600] for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"[:2000]


def fuzz_headers(tenant: Tenant) -> dict[str, str]:
    # sign-in attempts count against the source address: give the fuzzer one of its own
    ip = f"2001:db8:f022:{zlib.crc32(tenant.account_id.encode()) & 0xFFFF:x}::1"
    return {"Authorization": f"Bearer {tenant.key}", "X-Forwarded-For": ip, "User-Agent": "tests-fuzz/1.0"}


@pytest.fixture(scope="module")
def fuzz_tenant(server: Server) -> Tenant:
    return make_tenant(server, name="Fuzz Co")


SESSION_ONLY = (
    "/api/v1/api-keys",
    "/api/v1/users",
    "/api/v1/account",
    "/api/v1/session",
    "/api/v1/saved-views",
)


def test_every_operation_answers_as_documented(server: Server, fuzz_tenant: Tenant) -> None:
    run = fuzz(server.url, fuzz_headers(fuzz_tenant), EXAMPLES, lambda label: True)
    print(f"schemathesis, API key: {run.cases} cases")
    assert run.cases > 150
    assert not run.failures, "\n\n".join(f"{k}:\n{v}" for k, v in run.failures.items())


def test_session_operations_answer_as_documented(server: Server, fuzz_tenant: Tenant) -> None:
    """What a key may not do (keys, users, the account) fuzzed again as the owner's session, with CSRF."""
    client = fuzz_tenant.session_client()
    headers = {
        **fuzz_headers(fuzz_tenant),
        "Cookie": f"activitylog_session={client.cookies['activitylog_session']}",
        "X-CSRF-Token": client.headers["X-CSRF-Token"],
    }
    del headers["Authorization"]
    client.close()

    def include(label: str) -> bool:
        return label.split(" ", 1)[1].startswith(SESSION_ONLY) and label != "DELETE /api/v1/session"

    run = fuzz(server.url, headers, EXAMPLES, include)
    print(f"schemathesis, session: {run.cases} cases")
    assert run.cases > 25
    assert not run.failures, "\n\n".join(f"{k}:\n{v}" for k, v in run.failures.items())


def test_the_schema_documents_the_error_answers(server: Server) -> None:
    """Regression: only 200 and FastAPI's own 422 shape were declared, so every 401/403/404/409 and every
    real 422 body was undocumented."""
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            for status in ("400", "401", "403", "404", "409", "413", "422", "429"):
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"]["$ref"].endswith("/ErrorOut"), (method, path, status)


def test_a_405_names_every_method_the_path_serves(fuzz_tenant: Tenant) -> None:
    """Regression: the 405's Allow header named only the first route's method."""
    with fuzz_tenant.key_client() as client:
        collection = client.options("/api/v1/lists")
        one = client.put("/api/v1/lists/lst_x", json={"name": "x"})
    assert collection.status_code == 405 and collection.headers["allow"] == "GET, POST"
    assert one.status_code == 405 and one.headers["allow"] == "DELETE, GET, PATCH"
    assert one.json()["error"]["code"] == "method_not_allowed"
