"""Contract changes against the lake: a new nullable field is added in place, breaking ones refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubspoke.cli import app
from hubspoke.lake import LakeTable
from hubspoke.stack import Stack
from lake_schema import Contract
from lake_schema.contract import Field
from lake_schema.evolution import BreakingChange

SALES = {"account_value": "100.00", "owner_rep": "Ada Byron", "credit_limit": "500.00"}


def _synced(stack: Stack) -> LakeTable:
    sales = stack.spokes["sales"]
    sales.save_domain(sales.create_customer("Ada", "ada@example.com"), SALES)
    stack.propagate()
    stack.sync(["sales"])
    return stack.lake.table(stack.catalog.extension("sales"))


def _changed(contract: Contract, fields: list[Field], version: str = "1.1.0") -> Contract:
    return contract.model_copy(update={"fields": tuple(fields), "version": version})


def test_new_nullable_field_is_added_without_rewriting_data(stack: Stack) -> None:
    table = _synced(stack)
    files, version = set(table.delta().file_uris()), table.version()
    region = Field(
        name="region", type="string", nullable=True, privacy="internal", description="Sales region."
    )
    wider = LakeTable(_changed(table.contract, [*table.contract.fields, region]), table.path)

    assert wider.schema_change().added == ("region",)
    assert wider.evolve() == ["region"]
    assert wider.version() == version + 1 and set(wider.delta().file_uris()) == files
    [row] = wider.read().to_pylist()
    assert row["region"] is None
    assert wider.evolve() == [] and wider.version() == version + 1  # idempotent


def _field(contract: Contract, field: str, **changes: object) -> Field:
    return contract.field(field).model_copy(update=changes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("removed", "field 'sales_rep' was removed or renamed"),
        (
            "narrowed",
            "field 'account_value' changes type from decimal128(18, 2) to decimal128(10, 2)",
        ),
        ("renamed_key", "key 'client_id' is new: a key cannot change in place"),
        ("required", "new field 'region' must be nullable"),
    ],
)
def test_breaking_change_is_refused_before_anything_is_written(
    stack: Stack, change: str, message: str
) -> None:
    table = _synced(stack)
    c = table.contract
    fields = list(c.fields)
    if change == "removed":
        fields = [f for f in fields if f.name != "sales_rep"]
    elif change == "narrowed":
        fields = [
            _field(c, f.name, type="decimal(10,2)") if f.name == "account_value" else f
            for f in fields
        ]
    elif change == "required":
        fields.append(_field(c, "sales_rep", name="region", nullable=False))
    changed = _changed(c, fields, "2.0.0")
    if change == "renamed_key":
        changed = changed.model_copy(
            update={
                "primary_key": "client_id",
                "fields": tuple(
                    _field(c, "customer_id", name="client_id") if f.name == "customer_id" else f
                    for f in fields
                ),
            }
        )
    version = table.version()
    with pytest.raises(BreakingChange, match="breaking and was not applied") as refused:
        LakeTable(changed, table.path).evolve()
    assert message in str(refused.value)
    assert table.version() == version


def test_contracts_check_says_what_would_change(stack: Stack, tmp_path: Path) -> None:
    _synced(stack)
    runner = CliRunner()
    result = runner.invoke(app, ["contracts", "check", "--home", str(stack.settings.home)])
    assert result.exit_code == 0, result.output
    assert "customer_sales_domain" in result.output and "unchanged" in result.output
