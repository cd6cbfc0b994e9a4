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


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_integer_bounds_are_integers() -> None:
    """`"maximum": 1000000000000000.0` on an integer reads as a float to a generator."""
    floats = [(schema.get("title"), bound) for schema in _walk(DOCUMENT) if schema.get("type") == "integer"
              for bound in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
              if isinstance(schema.get(bound), float)]
    assert not floats, floats


def test_every_answer_an_operation_can_give_is_documented() -> None:
    """A body can be malformed (400), too large (413) or not JSON (415); any operation refuses a
    query parameter it does not take (422); a required Idempotency-Key is declared required and
    its absence documented (428); any operation refuses a one-value header sent twice (400)."""
    for method, path, operation in _operations():
        answers = operation["responses"]
        assert "422" in answers, _name(method, path)
        assert answers["400"]["description"].count("`duplicate_header`") == 1, _name(method, path)
        assert "`validation_failed`" in answers["422"]["description"], _name(method, path)
        if "requestBody" in operation:
            assert {"400", "408", "413", "415"} <= answers.keys(), _name(method, path)
            assert "malformed_json" in answers["400"]["description"]
            assert "`unstorable_value`" in answers["422"]["description"], _name(method, path)
        if "401" in answers and operation.get("security"):  # an API key's 401, not /metrics' token
            for status, code in (("401", "invalid_api_key"), ("401", "api_key_revoked"), ("429", "rate_limited"),
                                 ("429", "authentication_throttled"), ("503", "database_unavailable")):
                assert f"`{code}`" in answers[status]["description"], (_name(method, path), code)
            if method != "GET":
                assert "`concurrent_update`" in answers["409"]["description"], _name(method, path)
        keys = [p for p in operation.get("parameters", []) if p["name"] == "Idempotency-Key"]
        for key in keys:
            assert "`idempotency_request_in_progress`" in answers["409"]["description"], _name(method, path)
            for code in ("invalid_idempotency_key", "idempotency_key_reused"):
                assert f"`{code}`" in answers["422"]["description"], (_name(method, path), code)
            required = key["description"].startswith("Required.")
            assert key.get("required", False) is required, _name(method, path)
            if required:
                assert key["schema"] == {"type": "string", "title": "Idempotency-Key"}
                assert "idempotency_key_required" in answers["428"]["description"], _name(method, path)
    value_moving = [o for m, p, o in _operations() if m == "POST" and p in ("/v1/redemptions/holds", "/v1/redemptions")]
    assert value_moving and all(any(p["name"] == "Idempotency-Key" and p.get("required") for p in o["parameters"])
                                for o in value_moving)


def test_document_is_valid_openapi_3_1() -> None:
    """The whole document against the OpenAPI 3.1 specification's own schema."""
    from openapi_spec_validator import OpenAPIV31SpecValidator

    found = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
             for e in OpenAPIV31SpecValidator(DOCUMENT).iter_errors()]
    assert not found, "\n".join(found[:30])


_DOCUMENT_URI = "urn:voucher:openapi"


def _pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _examples() -> list[tuple[str, str, Any]]:
    """(where, JSON pointer to the schema, example): every `examples` of a schema in components
    (nested ones too) and every `example`/`examples` of a media type."""
    found: list[tuple[str, str, Any]] = []

    def schemas(node: Any, parts: tuple[str, ...]) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("examples"), list) and parts[-1] != "properties":
                found.extend(("/".join(parts[2:]) + f" examples[{i}]", _pointer(*parts), example)
                             for i, example in enumerate(node["examples"]))
            for key, value in node.items():
                if key not in ("examples", "example", "default", "const", "enum"):
                    schemas(value, (*parts, key))
        elif isinstance(node, list):
            for index, value in enumerate(node):
                schemas(value, (*parts, str(index)))

    for name, schema in DOCUMENT["components"]["schemas"].items():
        schemas(schema, ("components", "schemas", name))
    for method, path, operation in _operations():
        places = [(("requestBody",), operation.get("requestBody", {}))]
        places += [(("responses", status), answer) for status, answer in operation.get("responses", {}).items()]
        for place, holder in places:
            for media_type, media in holder.get("content", {}).items():
                parts = ("paths", path, method.lower(), *place, "content", media_type)
                where = f"{_name(method, path)} {' '.join(place)} {media_type}"
                if "example" in media:
                    found.append((f"{where} example", _pointer(*parts, "schema"), media["example"]))
                for key, example in media.get("examples", {}).items():
                    found.append((f"{where} examples[{key}]", _pointer(*parts, "schema"), example.get("value")))
    return found


def test_every_example_matches_its_schema() -> None:
    """Examples are what a reader copies: each validates against the schema it illustrates
    (formats such as uuid and date-time included), `$ref`s resolved within the document."""
    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    registry = Registry().with_resource(
        _DOCUMENT_URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012))
    examples = _examples()
    assert len(examples) > 100, "the walk found too few examples: is it still looking in the right places?"
    wrong = []
    for where, pointer, example in examples:
        validator = Draft202012Validator({"$ref": _DOCUMENT_URI + pointer}, registry=registry,
                                         format_checker=Draft202012Validator.FORMAT_CHECKER)
        wrong += [f"{where}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message[:160]}"
                  for e in validator.iter_errors(example)]
    assert not wrong, "\n".join(wrong)


#: Operations whose route files another change owns (settlement/routes.py, exports/routes.py):
#: their descriptions are written and wait to be pasted in. The test fails for an entry here
#: once its description has landed: take it out then.
def test_every_operation_has_a_description() -> None:
    """Who calls it, what it changes (or that it changes nothing) and which problems it answers:
    enough to use the operation without reading its code."""
    missing = [f"{_name(method, path)} ({operation['operationId']})" for method, path, operation in _operations()
               if not (operation.get("description") or "").strip()]
    assert not missing, "no description:\n" + "\n".join(missing)


def test_every_tag_is_declared_with_a_description() -> None:
    """Each tag an operation uses is declared once at the top, with a description; none is
    declared that no operation uses."""
    declared = [tag["name"] for tag in DOCUMENT.get("tags", [])]
    assert len(declared) == len(set(declared)), declared
    used = {tag for _method, _path, operation in _operations() for tag in operation.get("tags", [])}
    assert used - set(declared) == set(), f"used but not declared: {sorted(used - set(declared))}"
    assert set(declared) - used == set(), f"declared but unused: {sorted(set(declared) - used)}"
    undescribed = [tag["name"] for tag in DOCUMENT["tags"] if not (tag.get("description") or "").strip()]
    assert not undescribed, undescribed


def test_apps_with_the_same_routes_share_one_document_and_an_app_with_its_own_gets_its_own() -> None:
    """The document is made once per route table (main._openapi), not once per app: settings
    that add or drop only undocumented pages (the docs, the console) share it, and an app given a
    documented route of its own neither sees another's nor leaks its own into theirs."""
    from services.voucher.main import create_app
    from services.voucher.settings import Settings

    def settings(**overrides: Any) -> Settings:
        return Settings(database_url="sqlite+aiosqlite:///:memory:", environment="test", **overrides)

    plain, without_docs = create_app(settings()), create_app(settings(docs_enabled=False))
    assert plain.openapi() is without_docs.openapi()
    own = create_app(settings())

    @own.post("/v1/test-own-route")
    async def own_route() -> dict[str, str]:
        return {}

    assert "/v1/test-own-route" in own.openapi()["paths"]
    assert "/v1/test-own-route" not in create_app(settings()).openapi()["paths"]
    assert create_app(settings()).openapi() is plain.openapi()
    assert json.loads(openapi_doc.render()) == DOCUMENT
