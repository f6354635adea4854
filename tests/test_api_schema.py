"""The API against its own OpenAPI schema: schemathesis generates requests from the schema (valid
ones and, in negative mode, invalid ones) for every operation and runs all its checks on the
answers: no 5xx, every status declared, every body in its declared shape, valid requests accepted
and invalid ones refused.

The examples per operation are few in CI (ESTATELENS_SCHEMA_EXAMPLES, default 25); run it longer by
hand with e.g. ESTATELENS_SCHEMA_EXAMPLES=500.
"""
from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

from estatelens.web import create_app  # noqa: E402

TOKEN = "s3cret-token"
EXAMPLES = int(os.environ.get("ESTATELENS_SCHEMA_EXAMPLES", "25"))
# A request the schema cannot tell is wrong may still be refused: a search query is a small
# language (an unknown field is a 400), an id may name no photo (404), an upload may hold bytes
# that are no image (415), a photo may be untaggable (409), a client may upload too often (429).
# Valid-shaped requests answered so count as accepted; anything else (a 422 for a schema-valid
# request, a 5xx) fails.
# The first heatmap loads the PyTorch model: seconds on a busy machine, hence the long timeout.
CONFIG = """
request-timeout = 180

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "400", "401", "403", "404", "409", "410", "415", "429"]
"""


@pytest.fixture
def schema(index_copy, tmp_path):
    app = create_app(str(index_copy), token=TOKEN, upload_dir=tmp_path / "uploads", max_upload_bytes=200_000)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=SchemathesisConfig.from_str(CONFIG))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_keeps_to_the_schema(schema, mode):
    failures: dict[str, str] = {}
    tested: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14  # every endpoint is in the schema (test_api checks which)
    for op in operations:
        @given(case=op.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case):
            try:
                case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
            except BaseException as e:  # noqa: BLE001 - schemathesis raises groups; keep one per operation
                if isinstance(e, KeyboardInterrupt):
                    raise
                failures.setdefault(case.operation.label, str(e)[:1500])

        try:
            run()
        except Unsatisfiable:  # negative mode, an operation with nothing to make invalid (health)
            assert mode == GenerationMode.NEGATIVE
            continue
        tested.append(op.label)
    assert len(tested) >= (14 if mode == GenerationMode.POSITIVE else 10), tested
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
