"""Generate `_generated.py` (typed methods and TypedDicts) from the committed OpenAPI document.

    python clients/python/generate.py            # rewrite voucher_client/_generated.py
    python clients/python/generate.py --check    # exit 1 when it is stale

A development tool of the service's repository (`make client`; `make openapi` runs it after
rewriting the document): it is not part of the `voucher-client` distribution, and needs only the
standard library.

The output depends only on the document (sorted, no timestamps), so running it twice gives the
same bytes and `--check` can compare text. It fails loudly on OpenAPI features the client does
not support (cookie parameters, non-JSON request bodies) instead of emitting a wrong method.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import keyword
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "openapi" / "openapi.json"
TARGET = Path(__file__).resolve().parent / "voucher_client" / "_generated.py"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
IDEMPOTENCY_HEADER = "idempotency-key"
#: names the generated module defines or imports itself; a schema may not take them
RESERVED = {
    "Any", "AsyncOperations", "AsyncTransport", "DOCUMENT_SHA256", "Literal", "NotRequired",
    "OPERATIONS", "Operation", "SyncOperations", "SyncTransport", "TypedDict", "UUID", "cast",
    "date", "datetime",
}
PARAM_RESERVED = {"self", "body", "idempotency_key"}


class UnsupportedDocument(Exception):
    """The document uses something the generator does not know how to type."""


def _snake(name: str) -> str:
    out = re.sub(r"\W", "_", name).strip("_").lower() or "value"
    if out[0].isdigit():
        out = "_" + out
    return out


def _pascal(name: str) -> str:
    """`Page_VoucherPublic_` → `PageVoucherPublic`; `services__voucher__x__schemas__Y` → `XY`."""
    parts = [p for p in re.split(r"_+", name) if p]
    if "__" in name:  # pydantic's module-qualified name for a clash: keep the domain and the class
        chunks = name.split("__")
        parts = ([chunks[-3]] if len(chunks) >= 3 else []) + [chunks[-1]]
    return "".join(p[:1].upper() + p[1:] for p in parts) or "Schema"


def _doc(text: str | None, indent: str) -> list[str]:
    if not text:
        return []
    paragraphs = [" ".join(p.split()) for p in text.strip().split("\n\n") if p.strip()]
    body = "\n\n".join(paragraphs).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body += " "
    lines = body.split("\n")
    out = [f'{indent}"""{lines[0]}']
    out += [f"{indent}{line}" if line else "" for line in lines[1:]]
    if len(lines) == 1:
        out[0] += '"""'
    else:
        out.append(f'{indent}"""')
    return out


def _literal(values: Iterable[Any]) -> str:
    return "Literal[" + ", ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def _union(parts: list[str]) -> str:
    seen: list[str] = []
    for part in parts:
        for piece in _split_union(part):
            if piece not in seen:
                seen.append(piece)
    if "Any" in seen:
        return "Any | None" if "None" in seen else "Any"
    if "None" in seen:
        seen = [p for p in seen if p != "None"] + ["None"]
    return " | ".join(seen)


def _split_union(text: str) -> list[str]:
    pieces, depth, current = [], 0, ""
    for char in text:
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            pieces.append(current.strip())
            current = ""
        else:
            current += char
    pieces.append(current.strip())
    return pieces


@dataclass
class Param:
    api_name: str
    py_name: str
    annotation: str
    required: bool


@dataclass
class Method:
    operation_id: str
    http_method: str
    path: str
    summary: str
    description: str | None
    path_params: list[Param]
    query_params: list[Param]
    header_params: list[Param]
    idempotent: bool
    body_type: str | None
    body_mode: str  # "none", "required", "defaults_to_empty", "optional"
    returns: str  # "json", "bytes", "none"
    return_type: str


@dataclass
class Generator:
    document: Mapping[str, Any]
    names: dict[str, str] = field(default_factory=dict)
    imports: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        taken = set(RESERVED)
        for name in sorted(self.schemas):
            candidate = _pascal(name)
            if not candidate.isidentifier() or keyword.iskeyword(candidate):
                candidate = "Schema" + candidate
            base, n = candidate, 2
            while candidate in taken:
                candidate, n = f"{base}{n}", n + 1
            taken.add(candidate)
            self.names[name] = candidate

    @property
    def schemas(self) -> Mapping[str, Any]:
        return self.document.get("components", {}).get("schemas", {})

    def ref(self, ref: str) -> str:
        prefix = "#/components/schemas/"
        if not ref.startswith(prefix) or ref[len(prefix):] not in self.names:
            raise UnsupportedDocument(f"unresolvable $ref {ref}")
        return self.names[ref[len(prefix):]]

    def resolve(self, schema: Mapping[str, Any]) -> Mapping[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].removeprefix("#/components/schemas/")]
        return schema

    # -- types ----------------------------------------------------------------------------------

    def type_of(self, schema: Mapping[str, Any] | bool, *, param: bool = False) -> str:
        """The Python type of a JSON value; `param` widens uuid/date-time to what callers hold."""
        if schema is True or schema == {}:
            self.imports.add("Any")
            return "Any"
        if schema is False:
            return "None"
        assert isinstance(schema, Mapping)
        if "$ref" in schema:
            return self.ref(schema["$ref"])
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return _union([self.type_of(s, param=param) for s in schema[key]])
        if "allOf" in schema:
            if len(schema["allOf"]) == 1:
                return self.type_of(schema["allOf"][0], param=param)
            self.imports.add("Any")
            return "dict[str, Any]"
        if "const" in schema:
            self.imports.add("Literal")
            return _literal([schema["const"]])
        if "enum" in schema:
            self.imports.add("Literal")
            values = [v for v in schema["enum"] if v is not None]
            lit = _literal(values)
            return _union([lit, "None"]) if None in schema["enum"] else lit
        kind = schema.get("type")
        if isinstance(kind, list):
            return _union([self.type_of({**schema, "type": k}, param=param) for k in kind])
        if kind == "string":
            fmt = schema.get("format")
            if param and fmt == "uuid":
                self.imports.add("UUID")
                return "str | UUID"
            if param and fmt in ("date-time", "date"):
                self.imports.add("datetime" if fmt == "date-time" else "date")
                return "str | datetime" if fmt == "date-time" else "str | date"
            return "str"
        if kind == "integer":
            return "int"
        if kind == "number":
            return "float"
        if kind == "boolean":
            return "bool"
        if kind == "null":
            return "None"
        if kind == "array":
            return f"list[{self.type_of(schema.get('items', {}), param=param)}]"
        extra = schema.get("additionalProperties")
        if kind == "object" and isinstance(extra, Mapping) and extra and not schema.get("properties"):
            return f"dict[str, {self.type_of(extra)}]"
        self.imports.add("Any")
        return "dict[str, Any]"

    def schema_block(self, name: str) -> tuple[int, list[str]]:
        """(ordering rank, lines) of one component: Literal aliases, then classes, then aliases."""
        schema = self.schemas[name]
        py = self.names[name]
        if schema.get("type") == "object" and "properties" in schema:
            return 1, self.typed_dict(py, schema)
        if "enum" in schema:
            return 0, [f"{py} = {self.type_of(schema)}"] + _doc(schema.get("description"), "")
        return 2, [f"{py} = {self.type_of(schema)}"]

    def typed_dict(self, py: str, schema: Mapping[str, Any]) -> list[str]:
        self.imports.add("TypedDict")
        required = set(schema.get("required", []))
        fields = []
        for key in sorted(schema["properties"]):
            annotation = self.type_of(schema["properties"][key])
            if key not in required:
                self.imports.add("NotRequired")
                annotation = f"NotRequired[{annotation}]"
            fields.append((key, annotation))
        if all(k.isidentifier() and not keyword.iskeyword(k) for k, _ in fields):
            lines = [f"class {py}(TypedDict):"]
            doc = _doc(schema.get("description"), "    ")
            lines += doc + ([""] if doc and fields else [])
            lines += [f"    {key}: {annotation}" for key, annotation in fields] or ["    pass"]
            return lines
        items = ", ".join(f"{json.dumps(k)}: {a}" for k, a in fields)
        return [f'{py} = TypedDict("{py}", {{{items}}})']

    # -- operations -----------------------------------------------------------------------------

    def methods(self) -> list[Method]:
        found: dict[str, Method] = {}
        for path, item in self.document.get("paths", {}).items():
            shared = item.get("parameters", [])
            for http_method in METHODS:
                if http_method in item:
                    method = self.method(path, http_method.upper(), item[http_method], shared)
                    if method.operation_id in found:
                        raise UnsupportedDocument(f"duplicate operationId {method.operation_id}")
                    found[method.operation_id] = method
        return [found[k] for k in sorted(found)]

    def method(self, path: str, http_method: str, op: Mapping[str, Any], shared: list[Any]) -> Method:
        operation_id = op.get("operationId")
        if not operation_id or not operation_id.isidentifier() or keyword.iskeyword(operation_id):
            raise UnsupportedDocument(f"{http_method} {path}: operationId {operation_id!r} is not a name")
        by_key = {(p["in"], p["name"]): p for p in [*shared, *op.get("parameters", [])]}
        params = [self.resolve(p) for p in by_key.values()]
        used = set(PARAM_RESERVED)

        def param(p: Mapping[str, Any]) -> Param:
            py = _snake(p["name"])
            if keyword.iskeyword(py) or py in used:
                py += "_"
            used.add(py)
            annotation = self.type_of(p.get("schema", {}), param=True)
            required = bool(p.get("required"))
            if not required:
                annotation = _union([annotation, "None"])
            return Param(p["name"], py, annotation, required)

        path_order = re.findall(r"{([^}]+)}", path)
        path_params = sorted((p for p in params if p["in"] == "path"), key=lambda p: path_order.index(p["name"]))
        if [p["name"] for p in path_params] != path_order:
            raise UnsupportedDocument(f"{operation_id}: path parameters do not match {path}")
        idempotent = any(p["in"] == "header" and p["name"].lower() == IDEMPOTENCY_HEADER for p in params)
        for p in params:
            if p["in"] not in ("path", "query", "header"):
                raise UnsupportedDocument(f"{operation_id}: {p['in']} parameter {p['name']}")
        body_type, body_mode = self.body(operation_id, op.get("requestBody"))
        returns, return_type = self.response(op.get("responses", {}))
        return Method(
            operation_id=operation_id,
            http_method=http_method,
            path=path,
            summary=op.get("summary") or operation_id,
            description=op.get("description"),
            path_params=[param(p) for p in path_params],
            query_params=[param(p) for p in params if p["in"] == "query"],
            header_params=[
                param(p) for p in params
                if p["in"] == "header" and p["name"].lower() != IDEMPOTENCY_HEADER
            ],
            idempotent=idempotent,
            body_type=body_type,
            body_mode=body_mode,
            returns=returns,
            return_type=return_type,
        )

    def body(self, operation_id: str, request_body: Mapping[str, Any] | None) -> tuple[str | None, str]:
        if not request_body:
            return None, "none"
        content = request_body.get("content", {})
        media = next((m for m in sorted(content) if m == "application/json" or m.endswith("+json")), None)
        if media is None:
            raise UnsupportedDocument(f"{operation_id}: request body {sorted(content)} is not JSON")
        schema = content[media].get("schema", {})
        annotation = self.type_of(schema)
        nullable = "None" in _split_union(annotation)
        annotation = _union([p for p in _split_union(annotation) if p != "None"])
        if not request_body.get("required") or nullable:
            return annotation, "optional"
        if not self.resolve(schema).get("required"):  # every field optional: `{}` is a valid body
            return annotation, "defaults_to_empty"
        return annotation, "required"

    def response(self, responses: Mapping[str, Any]) -> tuple[str, str]:
        types: list[str] = []
        raw = False
        for status in sorted(responses):
            if not status.startswith("2"):
                continue
            for media, spec in sorted(responses[status].get("content", {}).items()):
                if media == "application/json" or media.endswith("+json"):
                    types.append(self.type_of(spec.get("schema", {})))
                else:
                    raw = True
        if types:
            return "json", _union(types)
        if raw:
            return "bytes", "bytes"
        return "none", "None"

    def render_method(self, m: Method, *, is_async: bool) -> list[str]:
        args = ["self"]
        args += [f"{p.py_name}: {p.annotation}" for p in m.path_params]
        if m.body_mode == "required":
            args.append(f"body: {m.body_type}")
        elif m.body_mode != "none":
            args.append(f"body: {m.body_type} | None = None")
        keyword_only = []
        for p in [*m.query_params, *m.header_params]:
            keyword_only.append(f"{p.py_name}: {p.annotation}" + ("" if p.required else " = None"))
        if m.idempotent:
            keyword_only.append("idempotency_key: str | None = None")
        if keyword_only:
            args += ["*", *keyword_only]
        prefix = "async def" if is_async else "def"
        one_line = f"    {prefix} {m.operation_id}({', '.join(args)}) -> {m.return_type}:"
        if len(one_line) <= 100:
            lines = [one_line]
        else:
            lines = [f"    {prefix} {m.operation_id}(", *[f"        {a}," for a in args], f"    ) -> {m.return_type}:"]
        notes = [f"`{m.http_method} {m.path}`."]
        if m.idempotent:
            notes.append("Sends an Idempotency-Key (a fresh UUID unless `idempotency_key` is given), so it is retried safely.")
        lines += _doc("\n\n".join([m.summary, " ".join(notes)]), "        ")

        call = [f'OPERATIONS["{m.operation_id}"]']
        if m.path_params:
            call.append("path={" + ", ".join(f'"{p.api_name}": {p.py_name}' for p in m.path_params) + "}")
        if m.query_params:
            call.append("query={" + ", ".join(f'"{p.api_name}": {p.py_name}' for p in m.query_params) + "}")
        if m.header_params:
            call.append("headers={" + ", ".join(f'"{p.api_name}": {p.py_name}' for p in m.header_params) + "}")
        if m.body_mode == "required":
            call += ["body=body", "send_body=True"]
        elif m.body_mode == "defaults_to_empty":
            call += ["body={} if body is None else body", "send_body=True"]
        elif m.body_mode == "optional":
            call += ["body=body", "send_body=body is not None"]
        if m.idempotent:
            call.append("idempotency_key=idempotency_key")
        invoke = ("await " if is_async else "") + "self._call("
        if m.returns == "none":
            lines += [f"        {invoke}", *[f"            {c}," for c in call], "        )"]
        else:
            self.imports.add("cast")
            lines += [
                "        return cast(",
                f"            {m.return_type},",
                f"            {invoke}",
                *[f"                {c}," for c in call],
                "            ),",
                "        )",
            ]
        return lines


def render(document_text: str) -> str:
    """The full text of `_generated.py` for this OpenAPI document."""
    document = json.loads(document_text)
    gen = Generator(document)
    blocks = sorted((gen.schema_block(name) + (gen.names[name],) for name in gen.schemas), key=lambda b: (b[0], b[2]))
    methods = gen.methods()
    sync = [line for m in methods for line in ["", *gen.render_method(m, is_async=False)]]
    asynchronous = [line for m in methods for line in ["", *gen.render_method(m, is_async=True)]]

    typing_names = sorted(n for n in gen.imports if n in {"Any", "Literal", "NotRequired", "TypedDict", "cast"})
    out = [
        '"""GENERATED by `python clients/python/generate.py` from openapi/openapi.json — do not',
        "edit; change the API, then rewrite the document and this module (`make openapi`).",
        "",
        f"OpenAPI {document.get('openapi', '?')}, {document.get('info', {}).get('title', '')} "
        f"{document.get('info', {}).get('version', '')}: {len(methods)} operations, {len(gen.schemas)} schemas.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
    ]
    if "date" in gen.imports or "datetime" in gen.imports:
        out.append(f"from datetime import {', '.join(sorted(n for n in gen.imports if n in {'date', 'datetime'}))}")
    if typing_names:
        out.append(f"from typing import {', '.join(typing_names)}")
    if "UUID" in gen.imports:
        out.append("from uuid import UUID")
    out += [
        "",
        "from voucher_client._transport import AsyncTransport, Operation, SyncTransport",
        "",
        f'DOCUMENT_SHA256 = "{hashlib.sha256(document_text.encode("utf-8")).hexdigest()}"',
    ]
    previous_was_class = True  # the imports above want two blank lines too
    for _, lines, _name in blocks:
        is_class = lines[0].startswith("class ")
        out += ["", ""] if is_class or previous_was_class else [""]
        out += lines
        previous_was_class = is_class
    out += ["", "", "OPERATIONS: dict[str, Operation] = {"]
    for m in methods:
        out.append(
            f'    "{m.operation_id}": Operation("{m.operation_id}", "{m.http_method}", "{m.path}", '
            f'idempotent={m.idempotent}, returns="{m.returns}"),'
        )
    out += ["}", "", "", "class SyncOperations(SyncTransport):"]
    out += ['    """Every operation of the API as a method (blocking)."""', *sync]
    out += ["", "", "class AsyncOperations(AsyncTransport):"]
    out += ['    """Every operation of the API as a coroutine method."""', *asynchronous]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python clients/python/generate.py", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when _generated.py is stale")
    parser.add_argument("--document", type=Path, default=DOCUMENT, help="the OpenAPI document (JSON)")
    parser.add_argument("--output", type=Path, default=TARGET, help="where the module goes")
    args = parser.parse_args(argv)
    text = render(args.document.read_text(encoding="utf-8"))
    current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
    if args.check:
        if current != text:
            print(f"{args.output.name} is stale: run `make client`", file=sys.stderr)
            return 1
        print(f"{args.output.name} matches {args.document.name}")
        return 0
    if current != text:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}")
    else:
        print(f"{args.output.name} already up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
