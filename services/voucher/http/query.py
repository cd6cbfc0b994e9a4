"""A query parameter an operation does not take is refused (422), as an unknown body field is:
`?stauts=held` must not quietly list everything.

On an operation that needs an API key the check runs right after the key is authenticated (and
its rate limit counted), so a caller without a valid key learns nothing about the operation's
parameters and meets the 401 and the failed-login throttle first; on a public operation it runs
as an app-wide dependency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args, get_origin

from fastapi import Request
from fastapi.routing import APIRoute
from pydantic import BaseModel

from services.voucher.errors import ValidationFailed, field_error
from services.voucher.i18n import msg

#: The dependencies that authenticate a key (http/auth.py registers its own): a route using one
#: checks its query string there, after authentication.
AUTHENTICATING: set[Callable[..., Any]] = set()


@dataclass(frozen=True)
class _Declared:
    names: frozenset[str]
    authenticated: bool
    #: The names that take several values (a list); any other is given once.
    lists: frozenset[str] = frozenset()


def _is_list(annotation: Any) -> bool:
    """A list, or an optional one (`list[str] | None`)."""
    if get_origin(annotation) in (list, tuple, set, frozenset):
        return True
    return any(get_origin(arg) in (list, tuple, set, frozenset) for arg in get_args(annotation))


_ATTRIBUTE = "_voucher_declared_query"  # kept on the route itself: it lives as long as the route


def declared(route: APIRoute) -> _Declared:
    """The query parameters `route` declares, through all its dependencies, and whether it
    authenticates a key."""
    found: _Declared | None = getattr(route, _ATTRIBUTE, None)
    if found is None:
        names: set[str] = set()
        lists: set[str] = set()
        authenticated = False
        pending: list[Any] = [route.dependant]
        while pending:
            dependant = pending.pop()
            pending.extend(dependant.dependencies)
            authenticated = authenticated or dependant.call in AUTHENTICATING
            for param in dependant.query_params:
                model = param.field_info.annotation
                if isinstance(model, type) and issubclass(model, BaseModel):  # a query parameter model
                    names.update(f.alias or name for name, f in model.model_fields.items())
                    lists.update(f.alias or name for name, f in model.model_fields.items() if _is_list(f.annotation))
                else:
                    names.add(param.alias)
                    if _is_list(model):
                        lists.add(param.alias)
        found = _Declared(frozenset(names), authenticated, frozenset(lists))
        setattr(route, _ATTRIBUTE, found)
    return found


def check(request: Request) -> None:
    """422 listing each query parameter the request's operation does not take."""
    route = request.scope.get("route")
    if not request.scope.get("query_string") or not isinstance(route, APIRoute):
        return
    found = declared(route)
    known = found.names
    unknown = sorted({name for name in request.query_params if name not in known})
    with_nul = sorted({name for name, value in request.query_params.multi_items() if "\x00" in value})
    if with_nul and not unknown:  # no filter holds NUL, and PostgreSQL cannot even compare with it
        raise ValidationFailed([
            field_error(name[:100], msg("a query parameter may not hold the NUL character (%00)"), "unstorable_text",
                        location="query")
            for name in with_nul[:20]
        ])
    if not unknown:
        # A filter given twice was narrowed to its last value (`programme_id=A&programme_id=B`
        # listed B's rows only, `format=csv&format=xlsx` exported xlsx): refused, as a field
        # given twice in a form would be (an independent review).
        # Counted in one pass: `given.count` per name was quadratic, and 16,000 `limit=1` on a
        # public route held a worker for 3.5 s of CPU with no key (an independent review).
        given = Counter(name for name, _ in request.query_params.multi_items())
        twice = sorted(name for name, times in given.items() if times > 1 and name not in found.lists)
        if twice:
            raise ValidationFailed([
                field_error(name[:100], msg("give this query parameter once"), "repeated_parameter", location="query")
                for name in twice[:20]
            ])
    if unknown:
        takes = sorted(known)
        raise ValidationFailed([
            field_error(name[:100], msg("this operation takes no query parameter of that name; it takes {names}",
                                        names=takes) if takes else
                        msg("this operation takes no query parameters"), "unknown_parameter", location="query")
            for name in unknown[:20]
        ])


async def refuse_unknown_query(request: Request) -> None:
    """The app-wide dependency: public operations are checked here, the others once their key
    is authenticated (http/auth.py)."""
    route = request.scope.get("route")
    if isinstance(route, APIRoute) and not declared(route).authenticated:
        check(request)
