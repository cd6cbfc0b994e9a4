"""A query parameter an operation does not take is refused (422), as an unknown body field is:
`?stauts=held` must not quietly list everything."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel

from services.voucher.errors import ValidationFailed, field_error
from services.voucher.i18n import msg

_ALLOWED: dict[int, frozenset[str]] = {}


def allowed(route: APIRoute) -> frozenset[str]:
    """The query parameters `route` declares, through all its dependencies."""
    names = _ALLOWED.get(id(route))
    if names is None:
        found: set[str] = set()
        pending: list[Any] = [route.dependant]
        while pending:
            dependant = pending.pop()
            pending.extend(dependant.dependencies)
            for param in dependant.query_params:
                model = param.field_info.annotation
                if isinstance(model, type) and issubclass(model, BaseModel):  # a query parameter model
                    found.update(f.alias or name for name, f in model.model_fields.items())
                else:
                    found.add(param.alias)
        names = _ALLOWED[id(route)] = frozenset(found)
    return names


async def refuse_unknown_query(request: Request) -> None:
    """An app-wide dependency: 422 listing each query parameter the operation does not take."""
    if not request.scope.get("query_string"):
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = allowed(route)
    unknown = sorted({name for name in request.query_params if name not in known})
    if unknown:
        takes = sorted(known)
        raise ValidationFailed([
            field_error(name[:100], msg("this operation takes no query parameter of that name; it takes {names}",
                                        names=takes) if takes else
                        msg("this operation takes no query parameters"), "unknown_parameter", location="query")
            for name in unknown[:20]
        ])
