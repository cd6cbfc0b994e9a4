"""Exports over HTTP: whole datasets streamed as JSON Lines, CSV or .xlsx, each with a manifest
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
from services.voucher.http.head import SENT_METHOD
from services.voucher.http.problems import AUTH_ERRORS, responses
from services.voucher.instants import Instant
from services.voucher.spreadsheet import XLSX_MEDIA_TYPE

router = APIRouter(prefix="/v1/exports", tags=["exports"])
Auditor = Annotated[Actor, Depends(require(Scope.AUDIT_READ))]

EXPORT_DESCRIPTION = """\
Streams every row of a dataset that matches the filters, in a stable order, as **JSON Lines**
(`format=jsonl`, the default: one object per line, for programs), **CSV** (`format=csv`: UTF-8
with a byte-order mark, a header of column names, CRLF line ends) or an **Excel workbook**
(`format=xlsx`). Amounts are integers in the unit's minor unit (CNY: fen, 1/100 yuan; GPU_HOUR:
thousandths of a GPU-hour; TOKEN: tokens) in JSON Lines and CSV; in CSV the header of an amount column says so
(`amount (minor units)`), since the .xlsx's same column holds the amount in the unit.

* JSON Lines: times RFC 3339 UTC; a redemption's `line_items` and `computation` and an audit
  event's `before`/`after` are nested JSON.
* CSV and .xlsx are for spreadsheets: every cell is flat (never JSON text) and every time is in
  Beijing time, Asia/Shanghai — in CSV as RFC 3339 text with its offset
  (`2026-03-01T08:00:00+08:00`), in .xlsx as an Excel date-time — and the header of a time column
  says so (`created_at (Asia/Shanghai)`). A redemption's `line_items` become `line_item_count`
  (the items themselves are the `redemption-line-items` dataset) and its `computation` becomes
  columns: `gross_subsidy`, `subsidy`, `limited_by`, `enterprise_pays`, … and a `<limit>_room` /
  `<limit>_after` pair per step. A settlement's `payee_account` (the account its approval paid
  to) becomes `payee_bank_name`, `payee_account_name` and `payee_account_number`, empty where
  none was recorded. An audit event's `before`/`after` are left out (see
  `audit-event-changes`). In CSV a null is an empty cell and a text that a spreadsheet would run
  as a formula starts with an apostrophe.
* .xlsx: one sheet named after the dataset (continued on further sheets past 1,048,575 rows),
  the header row frozen; amounts are numbers **in the unit** (yuan `#,##0.00`, GPU-hours
  `#,##0.000`, tokens `#,##0`, by the row's `unit`); text is always text, never a formula. The
  workbook is assembled on the server before its first byte is sent.

Datasets:
* `ledger-entries` — postings joined to their journal transaction and account: `posting_id`,
  `journal_id`, `kind`, `account_id`, `account_code`, `account_kind`, `amount`, `unit`,
  `programme_id`, `voucher_id`, `provider_id`, `enterprise_id` (of the account; on a voucher's
  accounts, the voucher's enterprise), `redemption_id`, `created_at`, then the journal's own
  `journal_created_at`, `journal_programme_id`, `journal_voucher_id` and `memo` (what its
  `ledger.posted` event records); in posting order. Filters match the posting's account,
  `enterprise_id` as that column reads.
* `redemptions`, `settlements` — every column, by id.
* `settlement-items` — every line of the settlements the same filters select (the range on the
  settlement's `created_at`): `id`, `settlement_id`, `kind` (`capture`, or `refund` with its
  `refund_id`), `redemption_id`, `order_reference`, `amount` (+ a capture, − a refund), `unit`,
  `occurred_at` (when it was captured or refunded), `released_at` (set when its settlement was
  cancelled), then its settlement's `programme_id`, `provider_id`, `period_start`, `period_end`,
  `settlement_status` and `settlement_created_at`; a settlement's lines together, settlements in
  the order they were made. A settlement's lines add up to its `total`, the positive ones to its
  `captured_total`.
* `redemption-line-items` — one row per line item of each redemption (the redemptions' filters):
  `redemption_id`, `line`, the redemption's ids, `order_reference`, `unit`, `status`,
  `created_at`, `captured_at`, the item's `category`, `description`, `accelerator`, `model`,
  `hours_milli`, `tokens`, `amount`, its `gross_subsidy` (before the limits), `rate_bps` (when one
  rate applies to the whole item) and `rate_source`. A redemption's items add up to its
  `order_amount` and `gross_subsidy`.
* `audit-events` — every column, in chain order (`seq`); events committed after the export
  sealed the chain, if any, come last with a null `seq`. To recompute a link from an exported
  event, write its times as the canonical encoding does: RFC 3339 UTC with all six microsecond
  digits (`2026-03-01T00:00:00.000000Z`), whatever the file's own rendering.
* `audit-event-changes` — one row per field an audit event records (the audit events' filters):
  `event_id`, `seq`, `occurred_at`, `action`, `resource_type`, `resource_id`, `programme_id`,
  `field` (a dotted path), `before`, `after`.

Filters: `programme_id`, `enterprise_id`, `provider_id`, `voucher_id`, `account_id` (ledger
entries only) and the half-open range [`since`, `until`) on the rows' time (`created_at`; an
audit event's `occurred_at`): `until` itself is left out, where a point-in-time balance's
`as_of` counts what was posted at that instant, so the export that adds up to the balance as of
T is the one `until` T plus one microsecond. A filter that does not apply to the dataset (e.g. `voucher_id`
for settlements and their items) is refused with 422, never ignored.

**Manifest.** Before streaming, the service releases the holds past their TTL or on vouchers
past their validity, and expires those vouchers (for at most 5 s: what every read already counts
as done, the worker's next run would do), seals every committed audit event, reads the data in one snapshot taken
after that, and records a manifest: dataset, format, filters, the requesting principal, the
audit chain head (`chain_seq`, `chain_hash`) the data is consistent with, `unsealed_events`
(events committed in the snapshot after that head: 0 means every row is proved under it),
`lapsed_unreleased` (holds and vouchers past their time whose release the snapshot did not hold
yet, shown held in the file: 0 means every lapse shows released, as the API shows it), and
`started_at`. The response names it in `Export-Id` and in
`Link: </v1/exports/manifests/{id}>; rel="describedby"`. When the last byte has been produced
the manifest gets `row_count`, `sha256` (of exactly the body's bytes, BOM included) and
`finished_at` — before the response ends, so a client that read the body to its end can fetch
`GET /v1/exports/manifests/{id}` and compare the digest at once. A manifest whose
`finished_at` stays null describes an export that was cut off. `row_count` counts the rows of
the file (line items, changes), never a header.

A HEAD request is checked as its GET would be (key, scope, filters) and answers the same status
and `Content-Type`, but runs no export: it records no manifest and sends no `Export-Id` (a
monitor's probe had read the whole dataset and recorded a finished export nobody received).
"""

_HEADERS = {
    "Export-Id": {"description": "The export's id; its manifest is at /v1/exports/manifests/{id}.",
                  "schema": {"type": "string", "format": "uuid"}},
    "Link": {"description": 'rel="describedby": the URL of the export\'s manifest.', "schema": {"type": "string"}},
}


@router.get(
    "/{dataset}",
    operation_id="export_dataset",
    summary="Stream a dataset as JSON Lines, CSV or .xlsx, described by a manifest (row count, SHA-256, chain head)",
    description=EXPORT_DESCRIPTION,
    response_class=StreamingResponse,
    responses={
        200: {"description": "The rows, streamed", "headers": _HEADERS, "content": {
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
            XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}},
        }},
        **responses(*AUTH_ERRORS, errors.ValidationFailed),
    },
)
async def export_dataset(
    dataset: Dataset, request: Request, session: Session, actor: Auditor,
    database: Annotated[Database, Depends(get_database)],
    format: Annotated[Format, Query(description="`jsonl` (default), `csv` or `xlsx`.")] = Format.JSONL,  # noqa: A002
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
    if request.scope.get(SENT_METHOD) == "HEAD":
        service.check_filters(dataset, filters)
        return StreamingResponse(iter(()), media_type=MEDIA_TYPES[format])
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
    description="Operators and auditors (`audit:read`). Answers an export's manifest: dataset, format, filters, "
    "who asked and the audit chain head the data is consistent with, then, once the last byte was produced, its "
    "row count and the SHA-256 of the body (a `finished_at` that stays null means the export was cut off). Changes "
    "nothing. Answers `not_found` for an unknown export.",
    summary="An export's manifest: what it contained, its row count and SHA-256, the chain head",
    response_model=ExportManifestPublic,
    responses=responses(*AUTH_ERRORS, errors.NotFound),
)
async def get_export_manifest(export_id: uuid.UUID, session: Session, actor: Auditor) -> ExportManifestPublic:
    return ExportManifestPublic.of(await service.get_manifest(session, export_id))
