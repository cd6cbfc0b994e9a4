"""Cursor pagination for every list: `limit` and `cursor` in, `items` and `next_cursor` out."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar, get_args

from fastapi import Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.voucher.db import IntPageRequest, PageRequest, decode_cursor, decode_int_cursor
from services.voucher.errors import ValidationFailed, field_error
from services.voucher.i18n import msg
from services.voucher.settings import MAX_PAGE_SIZE, Settings

T = TypeVar("T")


def _page_example(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """A page's example is one item's example and a cursor."""
    item_type = get_args(model.model_fields["items"].annotation)[0]
    extra = getattr(item_type, "model_config", {}).get("json_schema_extra") or {}
    examples = extra.get("examples") if isinstance(extra, dict) else None
    if examples:
        schema["examples"] = [{"items": [examples[0]], "next_cursor": "YzE6MDE5MGQ1ZDI"}]


class Page(BaseModel, Generic[T]):
    model_config = ConfigDict(json_schema_extra=_page_example)

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


Limit = Annotated[int | None, Query(
    ge=1, le=MAX_PAGE_SIZE,
    description=f"Items per page: default 50, at most {MAX_PAGE_SIZE} (an operator may set a lower maximum, "
    "VOUCHER_PAGE_LIMIT_MAX). A larger limit is refused with 422, never silently cut.")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")]


def _page_size(request: Request, limit: int | None) -> int:
    settings: Settings = request.app.state.settings
    if limit is not None and limit > settings.page_limit_max:
        raise ValidationFailed([field_error(
            "limit", msg("at most {maximum} items per page", maximum=settings.page_limit_max),
            "less_than_equal", location="query")])
    return min(limit or settings.page_limit_default, settings.page_limit_max)


async def page_request(request: Request, limit: Limit = None, cursor: Cursor = None) -> PageRequest:
    return PageRequest(limit=_page_size(request, limit), after=decode_cursor(cursor) if cursor else None)


Paging = Annotated[PageRequest, Depends(page_request)]


async def int_page_request(request: Request, limit: Limit = None, cursor: Cursor = None) -> IntPageRequest:
    """Paging for lists keyed by an auto-numbered integer (ledger postings)."""
    return IntPageRequest(limit=_page_size(request, limit), after=decode_int_cursor(cursor) if cursor else None)


IntPaging = Annotated[IntPageRequest, Depends(int_page_request)]
