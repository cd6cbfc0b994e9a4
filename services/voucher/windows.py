"""Time windows a client asks for: [since, until). Pure: the standard library and i18n only."""

from __future__ import annotations

from datetime import datetime

from services.voucher.i18n import Message, msg


def range_problem(since: datetime | None, until: datetime | None) -> Message | None:
    """Why [since, until) is no range, if it is none: every time-window filter says it alike
    (the audit trail's list had answered an empty page, which read as "no events")."""
    if since is not None and until is not None and until <= since:
        return msg("`until` must be after `since` (the range is [since, until))")
    return None
