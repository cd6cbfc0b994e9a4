"""The value engine answers and inserts a redemption as a plain record (rules.RedemptionRecord),
not an ORM instance: its fields must be exactly the table's columns, in the table's types, or an
insert would miss a column or an answer a field."""

from __future__ import annotations

import dataclasses
import typing

from services.voucher.db import table_of
from services.voucher.redemption import rules
from services.voucher.redemption.rules import RedemptionRecord
from services.voucher.tables import Redemption


def test_the_record_has_every_column_of_the_redemption_table_and_nothing_else() -> None:
    columns = [c.key for c in table_of(Redemption).c]
    assert [f.name for f in dataclasses.fields(RedemptionRecord)] == columns


def test_the_record_types_are_the_table_models_types() -> None:
    model = typing.get_type_hints(Redemption)
    record = typing.get_type_hints(RedemptionRecord, vars(rules))
    assert record == {name: model[name] for name in record}
