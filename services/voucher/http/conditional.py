"""ETag / If-Match for optimistic concurrency on updates."""

from __future__ import annotations

from services.voucher.errors import PreconditionFailed, PreconditionRequired


def etag(version: int) -> str:
    return f'"v{version}"'


def check_if_match(if_match: str | None, version: int) -> None:
    """412 when the client's copy is stale, 428 when it sent no If-Match at all, or only `*`
    (which matches any version, so it would skip the very check If-Match is required for)."""
    if if_match is None or not if_match.strip():
        raise PreconditionRequired(
            "send the ETag you read as If-Match, so two operators cannot overwrite each other"
        )
    candidates = [c.strip().removeprefix("W/") for c in if_match.split(",")]
    if "*" in candidates:
        raise PreconditionRequired(
            "If-Match: * matches any version; send the ETag you read, so two operators cannot overwrite each other",
            detail_zh="If-Match: * 可匹配任何版本；请发送您读取时得到的 ETag，以免两位操作员互相覆盖修改",
        )
    if etag(version) in candidates:
        return
    raise PreconditionFailed(
        f"the resource is now at {etag(version)}; read it again and re-apply your change",
        current_etag=etag(version),
    )
