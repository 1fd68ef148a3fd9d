"""The entity table the API reads: identity columns plus every extension's, joined once per refresh.

A lookup, a filtered page or an aggregate then reads one table (one indexed probe, one scan) instead
of joining a million identity rows with each extension per request.
"""

from __future__ import annotations

from collections.abc import Sequence

from lake_schema import Contract


def quote(identifier: str) -> str:
    """`identifier` as a quoted SQL identifier."""
    return '"' + identifier.replace('"', '""') + '"'


def table_name(identity: Contract) -> str:
    """The name of an entity's joined table in the snapshot."""
    return f"{identity.table_name}__entity"


def column(extension: Contract, field: str) -> str:
    """The joined column holding `field` of an extension (`sales__account_value`)."""
    return f"{extension.extension_name}__{field}"


def present_column(extension: Contract) -> str:
    """The joined column that is null when the extension holds no row for the entity."""
    return column(extension, extension.key_fields[0])


def select_sql(
    identity: Contract, extensions: Sequence[Contract], ids_from: str | None = None
) -> str:
    """SELECT of the joined rows, all of them or those whose key is in table `ids_from`."""
    key = quote(identity.key_fields[0])
    columns = ["i.*"]
    joins = []
    for n, ext in enumerate(extensions):
        alias = f"e{n}"
        columns += [f"{alias}.{quote(f.name)} AS {quote(column(ext, f.name))}" for f in ext.fields]
        joins.append(
            f" LEFT JOIN {quote(ext.table_name)} {alias}"
            f" ON {alias}.{quote(ext.key_fields[0])} = i.{key}"
        )
    where = f" WHERE i.{key} IN (SELECT {key} FROM {ids_from})" if ids_from else ""
    return f"SELECT {', '.join(columns)} FROM {quote(identity.table_name)} i{''.join(joins)}{where}"


def rebuild_sql(identity: Contract, extensions: Sequence[Contract]) -> list[str]:
    """Statements that recreate the joined table, sorted and indexed by key."""
    name, key = quote(table_name(identity)), quote(identity.key_fields[0])
    # Sorted by key: DuckDB's zone maps then prune key-ordered pages and keyset cursors.
    return [
        f"CREATE OR REPLACE TABLE {name} AS {select_sql(identity, extensions)} ORDER BY {key}",
        f"CREATE INDEX {quote(table_name(identity) + '_key')} ON {name} ({key})",
    ]


def update_sql(identity: Contract, extensions: Sequence[Contract], ids_from: str) -> list[str]:
    """Statements that replace the joined rows of the keys in table `ids_from`."""
    name, key = quote(table_name(identity)), quote(identity.key_fields[0])
    return [
        f"DELETE FROM {name} WHERE {key} IN (SELECT {key} FROM {ids_from})",
        f"INSERT INTO {name} {select_sql(identity, extensions, ids_from)}",
    ]
