"""Schemathesis against every tier, each a real ``strata`` process on its own ``/openapi.json``: every documented
route, request bodies in both codecs (JSON and msgpack), positive and negative data. Checks: no 5xx, no hang (every
call has a 10 s timeout), each answer's status, content type, headers and body conform to the document, a body
that breaks the schema is refused, and (where the schema says everything the validator checks) a body that
fits it is accepted. Slow lane."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator

import httpx
import jsonschema
import msgpack
import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import negative_data_rejection, positive_data_acceptance

from strata.deploy.local import ManagedProcess, free_port, strata_command
from tests.support import hypothesis_regex

hypothesis_regex.install()      # each regex character class built once (the schemas' are huge)

pytestmark = [pytest.mark.slow]
EXAMPLES = int(os.environ.get("STRATA_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.function_scoped_fixture])


def _packable(value):
    """msgpack has no integers beyond 64 bits: a client can only send such a number as a float."""
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        return float(value)
    if isinstance(value, list):
        return [_packable(v) for v in value]
    if isinstance(value, dict):
        return {k: _packable(v) for k, v in value.items()}
    return value


@schemathesis.serializer("application/msgpack")
def _to_msgpack(ctx, value) -> bytes:
    return msgpack.packb(_packable(value), use_bin_type=True, unicode_errors="surrogatepass")


@schemathesis.deserializer("application/msgpack")
def _from_msgpack(ctx, response):
    return msgpack.unpackb(response.content, raw=False)


def _process(name: str, argv: list[str], port: int, tmp_path_factory, env: dict | None = None) -> ManagedProcess:
    proc = ManagedProcess(name, argv, ready_url=f"http://127.0.0.1:{port}/readyz", env={**os.environ, **(env or {})},
                          log_path=tmp_path_factory.mktemp(f"{name}-log") / f"{name}.log")
    proc.start(timeout_s=120)
    return proc


def _stop(proc: ManagedProcess) -> None:
    rc = proc.stop()
    assert rc in (0, -signal.SIGTERM), f"{proc.name} exited with {rc}:\n{proc.output_tail()}"


@pytest.fixture(scope="module")
def edge_url(registry_dir, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    proc = _process("edge", [*strata_command(), "edge", "--registry", str(registry_dir), "--port", str(port),
                             "--store", "none", "--log-level", "ERROR"], port, tmp_path_factory)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def streaming_url(registry_dir, session_store, tansu_proc, tmp_path_factory) -> Iterator[str]:
    session_store.start()
    port = free_port()
    proc = _process("streaming", [*strata_command(), "streaming", "serve", "--registry", str(registry_dir),
                                  "--port", str(port), "--broker", tansu_proc.bootstrap, "--store", session_store.url,
                                  "--log-level", "ERROR"], port, tmp_path_factory,
                    {"STRATA_STREAMING__TOPICS__EVENTS": "fuzz-events", "STRATA_STREAMING__TOPICS__DEAD_LETTER": "fuzz-dlq"})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def origin_url(registry_dir, session_store, tmp_path_factory) -> Iterator[str]:
    session_store.start()
    port = free_port()
    proc = _process("origin", [*strata_command(), "origin", "--registry", str(registry_dir), "--port", str(port),
                               "--store", session_store.url, "--reasoner", "template", "--log-level", "ERROR"],
                    port, tmp_path_factory, {"STRATA_ORIGIN__STORE__TIMEOUT_MS": "500"})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


# Rules a JSON Schema cannot state (each route's description says them), so a schema-valid body may still be
# refused (422) there: an impression holds one explored/alpha/beta entry per item, an event's time lies in the
# ingest's window around its clock; item ids are unique within one catalog upsert.
PARTIAL = {("POST", "/v1/events"), ("POST", "/v1/items")}


def _body_schema(doc: dict, op, media: str | None) -> dict | None:
    post = doc["paths"][op.path].get(op.method.lower(), {})
    return post.get("requestBody", {}).get("content", {}).get(media, {}).get("schema") if media else None


def _refused_if_invalid(body, media: str, schema: dict, response, partial: bool) -> None:
    """Schemathesis' own negative check trusts its mutation (which can land in another ``anyOf`` branch and stay
    valid); this one asks the whole schema about what the server decoded. A schema-invalid body answered 2xx is a
    failure, except a batch of events that lists the invalid ones under ``rejected``."""
    try:
        seen = msgpack.unpackb(_to_msgpack(None, body), raw=False) if media == "application/msgpack" \
            else orjson.loads(json.dumps(body))         # what the server decodes of what was sent
    except Exception:
        return                              # the server could not decode it either (and refused it: checked)
    if jsonschema.Draft202012Validator(schema).is_valid(seen):
        return
    answer = msgpack.unpackb(response.content) if response.headers.get("content-type", [""])[0] == \
        "application/msgpack" else orjson.loads(response.content)
    if partial and answer.get("rejected"):
        return
    raise AssertionError(f"a schema-invalid body was answered {response.status_code}: {seen!r:.800}")


def _runner(url: str, op, mode, media, schema, partial: bool, excluded: list):
    @FUZZ
    @given(op.as_strategy(generation_mode=mode, media_type=media))
    def run(case) -> None:
        response = case.call_and_validate(base_url=url, timeout=10, excluded_checks=excluded)
        if schema is not None and 200 <= response.status_code < 300:
            _refused_if_invalid(case.body, media, schema, response, partial)

    return run


ROUTES = {"edge": {"POST /v1/recommend"}, "streaming": {"POST /v1/events", "POST /v1/recommend"},
          "origin": {"POST /v1/recommend", "POST /v1/explain", "POST /v1/items"}}
OPS = {"GET /healthz", "GET /readyz", "GET /metrics"}


def _fuzz(url: str, expected: set[str]) -> dict[str, list[str]]:
    """Every operation of the tier's document, positive and negative data, each media type of its request body:
    the failures found, by operation (the first of each kind, shrunk)."""
    api = schemathesis.openapi.from_url(url + "/openapi.json")
    doc = httpx.get(url + "/openapi.json").json()
    failures: dict[str, list[str]] = {}
    ops = [r.ok() for r in api.get_all_operations()]
    served = {f"{op.method.upper()} {op.path}" for op in ops}
    assert expected <= served, f"undocumented routes: {expected - served}"
    for op in ops:
        medias = op.get_request_payload_content_types() or [None]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for media in medias:
                partial = (op.method.upper(), op.path) in PARTIAL
                excluded = [negative_data_rejection] + ([positive_data_acceptance] if partial else [])
                schema = _body_schema(doc, op, media)

                run = _runner(url, op, mode, media, schema, partial, excluded)

                try:
                    run()
                except Unsatisfiable:
                    continue                 # nothing to break (a GET without parameters): no negative data
                except Exception as exc:     # a check failed (or a call hung past its timeout): report, go on
                    subs = exc.exceptions if isinstance(exc, BaseExceptionGroup) else [exc]
                    failures.setdefault(f"{op.method.upper()} {op.path} {mode.value} {media}", []).extend(
                        f"{type(e).__name__}: {str(e)[:1200]}" for e in subs)
    return failures


@pytest.mark.parametrize("tier", ["edge", "streaming", "origin"])
def test_every_route_of_every_tier_holds_its_document(tier, request) -> None:
    url = request.getfixturevalue(f"{tier}_url")
    failures = _fuzz(url, ROUTES[tier] | OPS)
    assert not failures, "\n\n".join(f"{k}:\n" + "\n".join(v) for k, v in failures.items())
