"""Contract checks over whole Arrow tables: which rows break a contract, without a Python loop."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from lake_schema.contract import Contract


def breaking_rows(contract: Contract, table: pa.Table) -> pa.Array:
    """A boolean mask of the rows of `table` (already in the contract's types) that break it.

    Types are the cast's business (a failed cast raises); this checks the rest: required values,
    allowed values, minimums and maximum lengths. `Contract.row_problems` says why, row by row.
    """
    bad = pa.array([False] * table.num_rows)
    for f in contract.fields:
        column = table.column(f.name)
        checks = []
        if not f.nullable:
            checks.append(pc.is_null(column))
        if f.allowed is not None:
            checks.append(pc.invert(pc.is_in(column, value_set=pa.array(f.allowed))))
        if f.minimum is not None:
            checks.append(pc.less(column, f.minimum))
        if f.max_length is not None:
            checks.append(pc.greater(pc.utf8_length(column), f.max_length))
        for check in checks:
            bad = pc.or_(bad, pc.fill_null(check, False))
    return bad
