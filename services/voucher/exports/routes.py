"""Exports over HTTP: whole datasets streamed as CSV or JSON Lines, each with a manifest
(operators and auditors)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from services.voucher import errors
from services.voucher.actor import Actor
from services.voucher.apikeys.rules import Scope
from services.voucher.db import Database
from services.voucher.exports import service
from services.voucher.exports.rules import MEDIA_TYPES, Dataset, Filters, Format, file_name
from services.voucher.exports.schemas import ExportManifestPublic
from services.voucher.http.auth import require
from services.voucher.http.deps import Session, get_database
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.instants import Instant

router = APIRouter(prefix="/v1/exports", tags=["exports"])
Auditor = Annotated[Actor, Depends(require(Scope.AUDIT_READ))]

EXPORT_DESCRIPTION = """\
Streams every row of a dataset that matches the filters, in a stable order, as **JSON Lines**
(`format=jsonl`, the default: one object per line) or **CSV** (`format=csv`: UTF-8 with a
byte-order mark, a header of column names, CRLF line ends). Amounts are integers in the unit's
minor unit (CNY: fen, 1/100 yuan; GPU_HOUR: thousandths of a GPU-hour; TOKEN: tokens), times RFC 3339 UTC; in CSV a null is an empty cell and JSON columns (an audit
event's `before`/`after`, a redemption's `line_items`) are JSON text.

Datasets:
* `ledger-entries` — postings joined to their journal transaction and account: `posting_id`,
  `journal_id`, `kind`, `account_id`, `account_code`, `account_kind`, `amount`, `unit`,
  `programme_id`, `voucher_id`, `provider_id`, `enterprise_id` (of the account), `redemption_id`,
  `created_at`; in posting order. Filters match the posting's account.
* `redemptions`, `settlements` — every column, by id.
* `audit-events` — every column, in chain order (`seq`); events committed after the export
  sealed the chain, if any, come last with a null `seq`.

Filters: `programme_id`, `enterprise_id`, `provider_id`, `voucher_id`, `account_id` (ledger
entries only) and the half-open range [`since`, `until`) on the rows' time (`created_at`; an
audit event's `occurred_at`). A filter that does not apply to the dataset (e.g. `voucher_id`
for settlements) is refused with 422, never ignored.

**Manifest.** Before streaming, the service seals every committed audit event, reads the
data in one snapshot taken after that, and records a manifest: dataset, format, filters, the
requesting principal, the audit chain head (`chain_seq`, `chain_hash`) the data is consistent
with, and `started_at`. The response names it in `Export-Id` and in
`Link: </v1/exports/manifests/{id}>; rel="describedby"`. When the last byte has been produced
the manifest gets `row_count`, `sha256` (of exactly the body's bytes, BOM included) and
`finished_at` — before the response ends, so a client that read the body to its end can fetch
`GET /v1/exports/manifests/{id}` and compare the digest at once. A manifest whose
`finished_at` stays null describes an export that was cut off.
"""

_HEADERS = {
    "Export-Id": {"description": "The export's id; its manifest is at /v1/exports/manifests/{id}.",
                  "schema": {"type": "string", "format": "uuid"}},
    "Link": {"description": 'rel="describedby": the URL of the export\'s manifest.', "schema": {"type": "string"}},
}


@router.get(
    "/{dataset}",
    operation_id="export_dataset",
    summary="Stream a dataset as CSV or JSON Lines, described by a manifest (row count, SHA-256, chain head)",
    description=EXPORT_DESCRIPTION,
    response_class=StreamingResponse,
    responses={
        200: {"description": "The rows, streamed", "headers": _HEADERS, "content": {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        }},
        **responses(*AUTH_ERRORS, errors.ValidationFailed),
    },
)
async def export_dataset(
    dataset: Dataset, request: Request, session: Session, actor: Auditor,
    database: Annotated[Database, Depends(get_database)],
    format: Annotated[Format, Query(description="`jsonl` (default) or `csv`.")] = Format.JSONL,  # noqa: A002
    programme_id: Annotated[uuid.UUID | None, Query()] = None,
    enterprise_id: Annotated[uuid.UUID | None, Query()] = None,
    provider_id: Annotated[uuid.UUID | None, Query()] = None,
    voucher_id: Annotated[uuid.UUID | None, Query()] = None,
    account_id: Annotated[uuid.UUID | None, Query(description="Ledger entries only.")] = None,
    since: Annotated[Instant | None, Query(description="Rows at or after (RFC 3339).")] = None,
    until: Annotated[Instant | None, Query(description="Rows before (RFC 3339).")] = None,
) -> StreamingResponse:
    filters = Filters(programme_id=programme_id, enterprise_id=enterprise_id, provider_id=provider_id,
                      voucher_id=voucher_id, account_id=account_id, since=since, until=until)
    export = await service.open_export(session, database, actor, dataset, format, filters, request.app.state.clock)
    export_id = export.manifest.id
    return StreamingResponse(
        export.body,
        media_type=MEDIA_TYPES[format],
        headers={
            "Export-Id": str(export_id),
            "Link": f'</v1/exports/manifests/{export_id}>; rel="describedby"',
            "Content-Disposition": f'attachment; filename="{file_name(dataset, format, export_id)}"',
        },
    )


@router.get(
    "/manifests/{export_id}",
    operation_id="get_export_manifest",
    summary="An export's manifest: what it contained, its row count and SHA-256, the chain head",
    response_model=ExportManifestPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_export_manifest(export_id: uuid.UUID, session: Session, actor: Auditor) -> ExportManifestPublic:
    return ExportManifestPublic.of(await service.get_manifest(session, export_id))
