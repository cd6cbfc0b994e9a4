"""The columns of each export file and how the rows read from the database become its rows.
Pure: stdlib only.

JSON Lines keeps every row as the database has it (a redemption's `line_items` and
`computation`, an audit event's `before` and `after` nested). The spreadsheet formats (CSV and
.xlsx) hold only flat cells, never JSON text, so a finance office can sort, filter and pivot:

* `redemptions`: `line_items` becomes `line_item_count`; `computation` becomes its figures and
  one `<limit>_room` / `<limit>_after` pair per step (stacking ceiling, enterprise cap, voucher
  balance, expected subsidy), in the order they apply.
* `redemption-line-items` (every format): one row per line item, with its redemption's ids,
  order, unit, status and times; its `amount` and `gross_subsidy` add up to the redemption's
  `order_amount` and `gross_subsidy`.
* `settlements`: `payee_account` (the account an approval paid to) becomes `payee_bank_name`,
  `payee_account_name` and `payee_account_number`, empty where none was recorded.
* `audit-events`: without `before`/`after`; those are `audit-event-changes` (every format), one
  row per field (nested fields by dotted path, list positions as numbers) with its value before
  and after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

#: Columns holding an amount in the minor unit of the row's `unit` (a spreadsheet shows them
#: in the unit: yuan, GPU-hours, tokens).
AMOUNTS = frozenset({
    "amount", "order_amount", "held_amount", "captured_amount", "refunded_amount", "captured_total",
    "refunded_total", "total", "gross_subsidy", "subsidy", "enterprise_pays", "spend_this_period_before",
    "subsidy_this_period_before", "expected_subsidy", "enterprise_cap", "stacking_ceiling_amount",
    "already_subsidised_on_order", "stacking_ceiling_room", "stacking_ceiling_after", "enterprise_cap_room",
    "enterprise_cap_after", "voucher_balance_room", "voucher_balance_after", "expected_subsidy_room",
    "expected_subsidy_after",
})

#: The limits of the subsidy computation, in the order they apply (redemption/subsidy.py).
LIMITS = ("stacking_ceiling", "enterprise_cap", "voucher_balance", "expected_subsidy")
COMPUTATION_COLUMNS = (
    "gross_subsidy", "subsidy", "limited_by", "enterprise_pays", "spend_this_period_before",
    "subsidy_this_period_before", "expected_subsidy", "enterprise_cap", "stacking_ceiling_bps",
    "stacking_ceiling_amount", "already_subsidised_on_order",
    *(f"{limit}_{end}" for limit in LIMITS for end in ("room", "after")),
)
LINE_ITEM_COLUMNS = (
    "redemption_id", "line", "voucher_id", "programme_id", "enterprise_id", "provider_id", "order_reference",
    "unit", "status", "created_at", "captured_at", "category", "description", "accelerator", "model",
    "hours_milli", "tokens", "amount", "gross_subsidy", "rate_bps", "rate_source",
)
#: The redemption columns a line item repeats (`id` as `redemption_id`).
_LINE_ITEM_CONTEXT = ("id", "voucher_id", "programme_id", "enterprise_id", "provider_id", "order_reference",
                      "unit", "status", "created_at", "captured_at")
_ITEM_FIELDS = ("category", "description", "accelerator", "model", "hours_milli", "tokens", "amount")
CHANGE_COLUMNS = ("event_id", "seq", "occurred_at", "action", "resource_type", "resource_id", "programme_id",
                  "field", "before", "after")
_CHANGE_CONTEXT = ("id", "seq", "occurred_at", "action", "resource_type", "resource_id", "programme_id")

Row = Sequence[Any]


@dataclass(frozen=True)
class Layout:
    """A file's columns, which of them are times, dates and amounts, and how a batch of rows
    read from the database becomes the file's rows (one each, or several, or none)."""

    columns: tuple[str, ...]
    times: frozenset[str] = frozenset()
    dates: frozenset[str] = frozenset()
    amounts: frozenset[str] = frozenset()
    expand: Callable[[Row], Iterable[Row]] | None = field(default=None, compare=False)

    def rows(self, batch: Iterable[Row]) -> Iterator[Row]:
        if self.expand is None:
            return iter(batch)
        expand = self.expand
        return (out for row in batch for out in expand(row))


def same(source: Sequence[tuple[str, type]]) -> Layout:
    """The rows as read."""
    names = tuple(name for name, _ in source)
    return Layout(names, *_kinds(source), amounts=AMOUNTS & frozenset(names))


def replacing(source: Sequence[tuple[str, type]],
              replacements: Mapping[str, tuple[tuple[str, ...], Callable[[Any], tuple[Any, ...]]]]) -> Layout:
    """The rows with some columns replaced in place by flat columns computed from their value
    (or by none)."""
    names = [name for name, _ in source]
    columns: list[str] = []
    steps: list[tuple[int, Callable[[Any], tuple[Any, ...]] | None]] = []
    for index, name in enumerate(names):
        if name in replacements:
            new, convert = replacements[name]
            columns += new
            steps.append((index, convert))
        else:
            columns.append(name)
            steps.append((index, None))

    def expand(row: Row) -> Iterable[Row]:
        out: list[Any] = []
        for index, convert in steps:
            if convert is None:
                out.append(row[index])
            else:
                out += convert(row[index])
        return (out,)

    times, dates = _kinds(source)
    return Layout(tuple(columns), times, dates, AMOUNTS & frozenset(columns), expand)


def redemptions_flat(source: Sequence[tuple[str, type]]) -> Layout:
    return replacing(source, {"line_items": (("line_item_count",), lambda items: (len(items or ()),)),
                              "computation": (COMPUTATION_COLUMNS, computation_cells)})


PAYEE_FIELDS = ("bank_name", "account_name", "account_number")


def settlements_flat(source: Sequence[tuple[str, type]]) -> Layout:
    return replacing(source, {"payee_account": (
        tuple(f"payee_{name}" for name in PAYEE_FIELDS),
        lambda account: tuple((account or {}).get(name) for name in PAYEE_FIELDS))})


def audit_events_flat(source: Sequence[tuple[str, type]]) -> Layout:
    return replacing(source, {"before": ((), lambda _: ()), "after": ((), lambda _: ())})


def computation_cells(computation: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """A redemption's subsidy computation as flat figures (None where it has none)."""
    found = computation or {}
    steps = {step.get("limit"): step for step in found.get("steps") or ()}
    stacking = steps.get("stacking_ceiling", {})
    return (
        found.get("gross_subsidy"), found.get("subsidy"), found.get("limited_by"), found.get("enterprise_pays"),
        found.get("spend_this_period_before"), found.get("subsidy_this_period_before"),
        found.get("expected_subsidy"), found.get("enterprise_cap"), stacking.get("ceiling_bps"),
        stacking.get("ceiling_amount"), stacking.get("already_subsidised_on_order"),
        *(steps.get(limit, {}).get(end) for limit in LIMITS for end in ("room", "after")),
    )


def line_items(source: Sequence[tuple[str, type]]) -> Layout:
    """One row per line item of each redemption."""
    names = [name for name, _ in source]
    context = [names.index(name) for name in _LINE_ITEM_CONTEXT]
    items_at, computation_at = names.index("line_items"), names.index("computation")

    def expand(row: Row) -> Iterable[Row]:
        head = [row[i] for i in context]
        computed = (row[computation_at] or {}).get("items") or ()
        for number, item in enumerate(row[items_at] or (), start=1):
            # The computation lists the items in the order they were given.
            subsidy = computed[number - 1] if number <= len(computed) else {}
            parts = subsidy.get("parts") or ()
            rates = {part.get("rate_bps") for part in parts}
            sources = dict.fromkeys(str(part.get("rate_source")) for part in parts)
            yield (head[0], number, *head[1:], *(item.get(name) for name in _ITEM_FIELDS), subsidy.get("subsidy"),
                   rates.pop() if len(rates) == 1 else None, "+".join(sources) or None)

    return Layout(LINE_ITEM_COLUMNS, frozenset({"created_at", "captured_at"}),
                  amounts=frozenset({"amount", "gross_subsidy"}), expand=expand)


def audit_changes(source: Sequence[tuple[str, type]]) -> Layout:
    """One row per field an audit event records, before and after."""
    names = [name for name, _ in source]
    context = [names.index(name) for name in _CHANGE_CONTEXT]
    before_at, after_at = names.index("before"), names.index("after")

    def expand(row: Row) -> Iterable[Row]:
        head = [row[i] for i in context]
        before, after = dict(flatten(row[before_at])), dict(flatten(row[after_at]))
        for path in dict.fromkeys([*before, *after]):
            yield (*head, path, before.get(path), after.get(path))  # as recorded, text stays text

    return Layout(CHANGE_COLUMNS, frozenset({"occurred_at"}), expand=expand)


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, scalar) for every leaf of a JSON value; an empty object or list is a
    leaf with no value."""
    if isinstance(value, Mapping):
        if not value and prefix:
            yield prefix, None
        for key, inner in value.items():
            yield from flatten(inner, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list | tuple):
        if not value and prefix:
            yield prefix, None
        for index, inner in enumerate(value):
            yield from flatten(inner, f"{prefix}.{index}" if prefix else str(index))
    elif prefix:
        yield prefix, value


def _kinds(source: Sequence[tuple[str, type]]) -> tuple[frozenset[str], frozenset[str]]:
    times = frozenset(name for name, kind in source if issubclass(kind, datetime))
    dates = frozenset(name for name, kind in source if issubclass(kind, date) and not issubclass(kind, datetime))
    return times, dates
