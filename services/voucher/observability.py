"""Request ids, logging and readiness.

Every log line written while serving a request carries its id. Lines are JSON (one object a
line, for log shippers) or text for humans (`VOUCHER_LOG_FORMAT=text`). Whatever a caller or a
bug puts into a message, key material never reaches the output: a redacting filter rewrites the
message and the traceback, and the formatter redacts the finished line once more
(docs/observability.md lists what is redacted).

Kept free of web and database frameworks: domain services import REQUEST_ID from here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from pythonjsonlogger.json import JsonFormatter

if TYPE_CHECKING:
    from services.voucher.db import Database

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="-")
_ACCEPTABLE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def new_request_id(incoming: str | None) -> str:
    """Keep a caller's (or load balancer's) id when it is sane, so traces join up; else mint one."""
    if incoming and _ACCEPTABLE_REQUEST_ID.match(incoming):
        return incoming
    return uuid.uuid4().hex


# -- redaction ----------------------------------------------------------------------------------

REDACTED = "[REDACTED]"
# Each pattern stops at quotes and backslashes, so redacting a finished JSON line keeps it JSON.
_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    # API keys and webhook signing secrets, wherever they appear.
    (re.compile(r"\b(vk|whsec)_[^\s\"'\\,;]+"), rf"\1_{REDACTED}"),
    # Credentials of an Authorization header or a bearer token quoted in a message.
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"'\\,;]+"), rf"\1 {REDACTED}"),
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?!bearer\b|basic\b)[^\s\"'\\,;]+"),
     rf"\1{REDACTED}"),
    # The password of a URL (DATABASE_URL): scheme://user:password@host. A scheme is tried only
    # where one can begin and is at most 32 characters: tried at every letter of a long run
    # (a 60,000-letter path in an access line), the match took time in the square of the run
    # and held the event loop for seconds (an independent review, December 2026). Neither the
    # user past a slash (RFC 3986's userinfo has none), and the password at most 256 characters,
    # so each try ends soon. The password may hold "/" (a base64 one often does, and SQLAlchemy
    # reads `user:Zm9v/YmFy@host` so): it had stopped there and been logged (a later review).
    (re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:/@\"'\\]*:)[^\s@\"'\\]{0,256}@"),
     rf"\1{REDACTED}@"),
)


def redact(text: str) -> str:
    """`text` with API keys, webhook secrets, bearer credentials and URL passwords replaced."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Renders the message, then redacts it and the exception text before any formatter runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep the template, never lose the line
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
            record.exc_info = None  # formatters would render the raw traceback again
        return True


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):  # the access line passes its own
            record.request_id = REQUEST_ID.get()
        return True


class JsonLogFormatter(JsonFormatter):
    """One JSON object a line: time, level, logger, message, request_id and any `extra=` fields."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message", "request_id"],
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception"},
            timestamp="time",
            json_ensure_ascii=False,
        )

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class TextLogFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO", fmt: str = "json", stream: IO[str] | None = None) -> None:
    """Send every `voucher.*` logger to one handler on stderr (or `stream`)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_RequestIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(TextLogFormatter() if fmt == "text" else JsonLogFormatter())
    root = logging.getLogger("voucher")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


# -- the access line ------------------------------------------------------------------------------

access_log = logging.getLogger("voucher.access")


def log_access(
    *, request_id: str, method: str, route: str, path: str, status: int, duration_ms: float,
    principal: dict[str, str] | None, code: str | None = None,
) -> None:
    """One line per request. `principal` is the key's id and role, never the key; `code` the
    problem's code when the answer is a problem (why it was refused)."""
    level = logging.WARNING if status >= 500 else logging.INFO
    if not access_log.isEnabledFor(level):  # at WARNING, a 5xx's line is still written (a review)
        return
    access_log.log(
        level,
        "%s %s %s%s %.1fms",
        method, route, status, f" {code}" if code else "", duration_ms,
        extra={
            "request_id": request_id, "method": method, "route": route, "path": path,
            "status": status, "duration_ms": round(duration_ms, 3), "principal": principal, "code": code,
        },
    )


# -- readiness --------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def migration_heads(directory: Path = MIGRATIONS) -> frozenset[str]:
    """The head revision(s) of `migrations/`, read once per process (at start-up)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory(str(directory)).get_heads())


def known_revisions(directory: Path = MIGRATIONS) -> frozenset[str]:
    """Every revision of `migrations/`: one a database records that is not among them was made
    by a newer build."""
    from alembic.script import ScriptDirectory

    return frozenset(script.revision for script in ScriptDirectory(str(directory)).walk_revisions())


async def database_heads(database: Database) -> frozenset[str]:
    """The revision(s) the database's `alembic_version` table records (empty: never migrated).
    Raises whatever the driver raises when the database does not answer."""
    from alembic.runtime.migration import MigrationContext

    def read(connection: Any) -> frozenset[str]:
        return frozenset(MigrationContext.configure(connection).get_current_heads())

    async with database.engine.connect() as connection:
        return await connection.run_sync(read)


#: How often, at most, a serving process reads the database's revision for `SchemaWatch`, and
#: how long a read may take before the last answer stands.
SCHEMA_RECHECK_SECONDS = 5.0
SCHEMA_READ_SECONDS = 2.0
schema_log = logging.getLogger("voucher.schema")


class SchemaWatch:
    """Whether the database is at this build's migration head, as this process last read it:
    read again by the first writing request after `interval` seconds (and by every /readyz).
    An API process left running across an upgrade (or a downgrade) refuses writes from then
    on, instead of writing rows the new schema's rules do not expect (docs/decisions.md,
    "Upgrade with the writers stopped"). One small read per interval per process, none per
    request; one read at a time, cut off after SCHEMA_READ_SECONDS (a database that does not
    answer leaves the last answer standing, and is the request's own 503)."""

    def __init__(self, interval: float = SCHEMA_RECHECK_SECONDS) -> None:
        self.interval = interval
        self.checked_at = float("-inf")
        self.found: frozenset[str] | None = None
        self._found_at = float("-inf")  # when the read that found it started
        self._reading: asyncio.Task[None] | None = None

    def saw(self, found: frozenset[str], started: float | None = None) -> None:
        """Record a reading that started at `started` (now by default); one that started
        before the reading held is older news and is dropped."""
        started = time.monotonic() if started is None else started
        if started < self._found_at:
            return
        if found != self.found:
            wanted = migration_heads()
            if found != wanted:
                schema_log.error("the database is at revision %s but this process's build needs %s: writes are "
                                 "refused until it is restarted with the build the database was migrated for, or "
                                 "the database is upgraded", sorted(found) or "none", sorted(wanted))
            elif self.found is not None:
                schema_log.warning("the database is at this build's revision %s again: writes are accepted",
                                   sorted(found))
        self.found, self._found_at, self.checked_at = found, started, max(self.checked_at, started)

    async def _read(self, database: Database) -> None:
        started = time.monotonic()
        try:
            self.saw(await asyncio.wait_for(database_heads(database), SCHEMA_READ_SECONDS), started)
        except Exception:  # noqa: BLE001 - whatever the driver raises, or the time is up: not this check's
            schema_log.debug("the database's revision could not be read; the last one read stands")
        finally:
            self._reading = None

    async def mismatch(self, database: Database) -> tuple[list[str], list[str]] | None:
        """(the database's revisions, this build's heads) if they differ, as last read; None
        when they match or could never be read. The request that finds the reading stale
        waits for the new one (as do those that come before any reading exists); the others
        use the last answer."""
        reading = self._reading
        if reading is None and time.monotonic() - self.checked_at >= self.interval:
            self.checked_at = time.monotonic()
            reading = self._reading = asyncio.ensure_future(self._read(database))
            await asyncio.shield(reading)
        elif reading is not None and self.found is None:
            await asyncio.shield(reading)
        wanted = migration_heads()
        if self.found is None or self.found == wanted:
            return None
        return sorted(self.found), sorted(wanted)
