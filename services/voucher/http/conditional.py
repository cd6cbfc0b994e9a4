"""ETag / If-Match for optimistic concurrency on updates."""

from __future__ import annotations

from services.voucher.errors import PreconditionFailed, PreconditionRequired
from services.voucher.i18n import msg


def etag(version: int) -> str:
    return f'"v{version}"'


def check_if_match(if_match: str | None, version: int) -> None:
    """412 when the client's copy is stale, 428 when it sent no If-Match at all, or only `*`
    (which matches any version, so it would skip the very check If-Match is required for)."""
    if if_match is None or not if_match.strip():
        raise PreconditionRequired(
            msg("send the ETag you read as If-Match, so two operators cannot overwrite each other")
        )
    candidates = [c.strip().removeprefix("W/") for c in if_match.split(",")]
    if "*" in candidates:
        raise PreconditionRequired(
            msg("If-Match: * matches any version; send the ETag you read, so two operators cannot overwrite each other"),
        )
    if etag(version) in candidates:
        return
    raise PreconditionFailed(
        msg("the resource is now at {etag}; read it again and re-apply your change", etag=etag(version)),
        current_etag=etag(version),
    )
