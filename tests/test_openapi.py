"""The OpenAPI document: committed, current, and complete (DESIGN §5).

`openapi/openapi.json` must equal what the app renders (run `make openapi` after changing a route
or schema), and every operation must be documented well enough to be used without reading code:
an operationId, tags, a summary, the problem+json errors it can answer with, and examples.
"""

from __future__ import annotations

import difflib
import itertools
import json
from typing import Any

import pytest

from services.voucher import openapi_doc

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
PROBLEM_JSON = "application/problem+json"
DOCUMENT: dict[str, Any] = json.loads(openapi_doc.render())


def _operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in sorted(DOCUMENT["paths"].items())
        for method, operation in sorted(item.items())
        if method in METHODS
    ]


def _name(method: str, path: str) -> str:
    return f"{method} {path}"


def _resolve(schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(component name, schema) following `$ref`s into components/schemas.

    An optional body (`anyOf: [X, null]`) is resolved to X: its examples are X's.
    """
    name = None
    while True:
        if "$ref" in schema:
            ref = schema["$ref"]
            assert ref.startswith("#/components/schemas/"), ref
            name = ref.rsplit("/", 1)[1]
            schema = DOCUMENT["components"]["schemas"][name]
            continue
        options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
        if len(options) == 1 and not schema.get("examples"):
            schema = options[0]
            continue
        return name, schema


def _has_examples(media: dict[str, Any], schema: dict[str, Any]) -> bool:
    """Examples on the schema (JSON Schema `examples`) or on the media type (`examples`/`example`)."""
    return bool(schema.get("examples") or media.get("examples") or media.get("example"))


#: Public by design: the problem catalogue and the 公示 notice (real notices are public).
PUBLIC_PATHS = ("/v1/problems", "/v1/programmes/{programme_id}/publicity",
                "/v1/audit/public-key")  # a public key is public: anyone may check a checkpoint


def _requires_auth(path: str) -> bool:
    return path.startswith("/v1/") and not path.startswith(PUBLIC_PATHS)


def test_committed_document_matches_the_app() -> None:
    committed = openapi_doc.PATH.read_text(encoding="utf-8")
    rendered = openapi_doc.render()
    if committed != rendered:
        diff = difflib.unified_diff(
            committed.splitlines(), rendered.splitlines(), "committed", "app", lineterm="", n=2
        )
        shown = list(itertools.islice(diff, 60))
        pytest.fail(
            "openapi/openapi.json is out of date: run `make openapi` and commit it\n"
            + "\n".join(shown),
            pytrace=False,
        )


def test_document_is_openapi_3_1() -> None:
    assert DOCUMENT["openapi"].startswith("3.1."), DOCUMENT["openapi"]
    assert DOCUMENT["info"]["title"] and DOCUMENT["info"]["version"]
    assert DOCUMENT["paths"]


def test_every_operation_has_a_unique_operation_id_tags_and_a_summary() -> None:
    seen: dict[str, str] = {}
    missing: list[str] = []
    for method, path, operation in _operations():
        name = _name(method, path)
        operation_id = operation.get("operationId")
        if not operation_id:
            missing.append(f"{name}: no operationId")
        elif operation_id in seen:
            missing.append(f"{name}: operationId {operation_id!r} also used by {seen[operation_id]}")
        else:
            seen[operation_id] = name
        if not operation.get("tags"):
            missing.append(f"{name}: no tags")
        if not (operation.get("summary") or "").strip():
            missing.append(f"{name}: no summary")
    assert not missing, "\n".join(missing)


def test_every_authenticated_operation_documents_a_401_problem() -> None:
    missing = []
    for method, path, operation in _operations():
        if not _requires_auth(path):
            continue
        response = operation.get("responses", {}).get("401")
        if response is None:
            missing.append(f"{_name(method, path)}: no 401 response")
        elif PROBLEM_JSON not in response.get("content", {}):
            missing.append(
                f"{_name(method, path)}: 401 is {sorted(response.get('content', {}))}, "
                f"not {PROBLEM_JSON}"
            )
    assert not missing, "\n".join(missing)


def test_every_documented_error_is_a_problem() -> None:
    """Every 4xx/5xx an operation documents is RFC 9457 problem+json, never FastAPI's default."""
    wrong = []
    for method, path, operation in _operations():
        for status, response in sorted(operation.get("responses", {}).items()):
            if status[0] in "45" and sorted(response.get("content", {})) != [PROBLEM_JSON]:
                wrong.append(f"{_name(method, path)} {status}: {sorted(response.get('content', {}))}")
    assert not wrong, "\n".join(wrong)


def test_every_request_body_has_examples() -> None:
    missing = []
    for method, path, operation in _operations():
        body = operation.get("requestBody")
        if body is None:
            continue
        for media_type, media in sorted(body.get("content", {}).items()):
            component, schema = _resolve(media.get("schema", {}))
            if not _has_examples(media, schema):
                missing.append(f"{_name(method, path)} {media_type} (schema {component or 'inline'})")
    assert not missing, "\n".join(missing)


def test_every_success_response_component_has_examples() -> None:
    missing = []
    for method, path, operation in _operations():
        for status, response in sorted(operation.get("responses", {}).items()):
            if not status.startswith("2"):
                continue
            media = response.get("content", {}).get("application/json")
            if media is None or "$ref" not in media.get("schema", {}):
                continue
            component, schema = _resolve(media["schema"])
            if not _has_examples(media, schema):
                missing.append(f"{_name(method, path)} {status} (schema {component})")
    assert not missing, "\n".join(missing)


def test_problem_schema_is_a_component() -> None:
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["properties"])


def test_every_error_example_is_one_consistent_problem() -> None:
    """An example's code, type and title belong to the same problem (they once mixed two)."""
    from services.voucher.http.meta import catalogue

    known = catalogue()
    for _path, _method, operation in _operations():
        for status, response in operation.get("responses", {}).items():
            example = response.get("content", {}).get("application/problem+json", {}).get("example")
            if example is None:
                continue
            code = example["code"]
            assert code in known, (operation["operationId"], status, code)
            assert example["type"] == f"/v1/problems/{code}"
            assert example["title"] == known[code].title, (operation["operationId"], status, example)
            assert str(example["status"]) == str(status) == str(known[code].status)


def test_the_problem_component_is_the_http_problem() -> None:
    """Two models named Problem would make one silently stand for the other."""
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "code"} <= set(problem["properties"])


def test_every_description_of_a_minor_unit_says_what_it_is_for_every_unit() -> None:
    """GPU-hour and token programmes are not described in fen: wherever the document says
    "minor unit", it says what that is for CNY, GPU_HOUR and TOKEN alike."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "description" and isinstance(value, str):
                    texts.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(DOCUMENT)
    about_minor = [t for t in texts if "minor unit" in t]
    assert about_minor
    for text in about_minor:
        assert "GPU_HOUR" in text and "TOKEN" in text and "fen" in text, text
    cny_only = [t for t in texts if "fen" in t and "minor unit" not in t]
    assert cny_only == ["In fen (1/100 yuan): revenue is in CNY whatever a programme's unit."] * len(cny_only), cny_only
