"""Response model of an export's manifest."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.voucher.exports.rules import Dataset, Format


class ExportManifestPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [{
        "id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e70", "dataset": "ledger-entries", "format": "csv",
        "filters": {"programme_id": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e20", "since": "2026-03-01T00:00:00Z"},
        "requested_by": "0190d5d2-1c4e-7a10-8a55-3f2b9c1d0e12", "chain_seq": 48213,
        "chain_hash": "9f2c4e0b7a51d3c8e6f1a2b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8",
        "unsealed_events": 0, "lapsed_unreleased": 0, "row_count": 120344, "sha256": "3a7bd3e2360a3d29eea436fcfb7e44c735d117c42d1c1835420b6b9942dd4f1b",
        "started_at": "2026-04-01T02:00:00Z", "finished_at": "2026-04-01T02:00:07Z", "is_complete": True}]})

    id: uuid.UUID = Field(description="The export's id: the `Export-Id` header of its response.")
    dataset: Dataset
    format: Format
    filters: dict[str, Any] = Field(description="The filters the export applied, as given.")
    requested_by: uuid.UUID | None = Field(description="The principal whose key asked for it.")
    chain_seq: int = Field(description="The audit chain head the export is consistent with: events "
                                       "1..chain_seq were sealed, and the data was read in one "
                                       "snapshot taken after sealing them.")
    chain_hash: str = Field(description="The chain hash at `chain_seq`.")
    unsealed_events: int | None = Field(
        default=None,
        description="Audit events committed in the export's snapshot but not yet sealed when it was taken "
                    "(changes committed between the seal and the snapshot, or while it was taken). 0: every row "
                    "of the file is proved under `chain_seq`. Otherwise the rows those events describe (their "
                    "`seq` is above `chain_seq`, or null in an audit-events export) are proved by a later "
                    "checkpoint. Null on manifests made before this was recorded.")
    lapsed_unreleased: int | None = Field(
        default=None,
        description="Releases not yet posted in the export's snapshot, across the whole database whatever the "
                    "export's filters: holds past their TTL, and vouchers past their validity (a hold on such a "
                    "voucher may count in both). An export posts them first, for a few seconds, and goes on "
                    "without the rest. 0: the file shows every lapse released, as every API read does. Otherwise "
                    "the file may show held what the API shows released. Null on manifests made before this was "
                    "recorded.")
    row_count: int | None = Field(description="Rows in the file (not counting a CSV header); null until "
                                              "the last byte was produced.")
    sha256: str | None = Field(description="Hex SHA-256 of exactly the bytes of the response body "
                                           "(the CSV's BOM and header included); null until complete.")
    started_at: datetime
    finished_at: datetime | None = Field(description="When the last byte was produced; null if the "
                                                     "export is still running or was cut off.")

    is_complete: bool = Field(default=False, description="The body was produced to its end; "
                                                         "`row_count` and `sha256` describe it.")

    @classmethod
    def of(cls, manifest: Any) -> ExportManifestPublic:
        public = cls.model_validate(manifest)
        return public.model_copy(update={"is_complete": manifest.finished_at is not None})
