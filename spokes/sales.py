"""The sales spoke: a modern CRM that keeps accounts beside its customers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from random import Random
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from spokes.base import IsoTextEncodings, LocalSchema, Spoke, iso_stamp, parse_iso_stamp

_REPS = ["Ada Byron", "Grace Hopper", "Alan Kay", "Barbara Liskov", "Ken Iverson", None]

_SQLITE = """
CREATE TABLE IF NOT EXISTS customer (
    customer_id TEXT PRIMARY KEY,
    full_name TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    hub_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS account (
    customer_id TEXT PRIMARY KEY,
    account_value TEXT NOT NULL,   -- decimal as text, exact
    owner_rep TEXT,
    credit_limit TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS account_updated_at ON account (updated_at);
"""

_POSTGRES = """
CREATE TABLE IF NOT EXISTS customer (
    customer_id TEXT PRIMARY KEY,
    full_name TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    hub_version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS account (
    customer_id TEXT PRIMARY KEY,
    account_value TEXT NOT NULL,   -- decimal as text, exact
    owner_rep TEXT,
    credit_limit TEXT NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL, -- byte order: fixed-width ISO text sorts as instants
    deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS account_updated_at ON account (updated_at);
"""

_MARIADB = """
CREATE TABLE IF NOT EXISTS customer (
    customer_id VARCHAR(36) PRIMARY KEY,   -- MariaDB cannot key a TEXT column
    full_name TEXT NOT NULL,
    email TEXT NOT NULL,
    created_at CHAR(27) NOT NULL,          -- ISO-8601 UTC text, always 27 characters
    created_by VARCHAR(64) NOT NULL,
    updated_at CHAR(27) NOT NULL,
    is_deleted INTEGER NOT NULL DEFAULT 0,
    hub_version BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS account (
    customer_id VARCHAR(36) PRIMARY KEY,
    account_value VARCHAR(64) NOT NULL,    -- decimal as text, exact
    owner_rep VARCHAR(255),
    credit_limit VARCHAR(64) NOT NULL,
    updated_at CHAR(27) NOT NULL,
    deleted_at CHAR(27)
) ENGINE=InnoDB;
CREATE INDEX IF NOT EXISTS account_updated_at ON account (updated_at);
"""

SCHEMA = LocalSchema(
    ddl={"sqlite": _SQLITE, "postgres": _POSTGRES, "mariadb": _MARIADB},
    identity_table="customer",
    identity_key="customer_id",
    hub_version="hub_version",
    identity_columns={
        "id": "customer_id",
        "name": "full_name",
        "email": "email",
        "created_at": "created_at",
        "created_by": "created_by",
        "updated_at": "updated_at",
        "deleted": "is_deleted",
    },
    domain_table="account",
    domain_key="customer_id",
    domain_updated="updated_at",
    domain_deleted="deleted_at IS NOT NULL",
)


class SalesSpoke(IsoTextEncodings, Spoke):
    """Sales CRM: ISO-8601 UTC text stamps, exact decimals as text, soft deletes by timestamp."""

    name = "sales"
    schema = SCHEMA

    def domain_to_contract(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "customer_id": row["customer_id"],
            "account_value": Decimal(row["account_value"]),
            "sales_rep": row["owner_rep"],
            "credit_limit": Decimal(row["credit_limit"]),
            "updated_at": parse_iso_stamp(row["updated_at"]),
        }

    def domain_batch_to_contract(self, batch: pa.RecordBatch) -> pa.Table:
        money = pa.decimal128(18, 2)
        return pa.table(
            {
                "customer_id": pc.cast(batch.column("customer_id"), pa.string()),
                "account_value": pc.cast(
                    pc.cast(batch.column("account_value"), pa.string()), money
                ),
                "sales_rep": pc.cast(batch.column("owner_rep"), pa.string()),
                "credit_limit": pc.cast(pc.cast(batch.column("credit_limit"), pa.string()), money),
                "updated_at": self.stamps_to_arrow(batch.column("updated_at")),
            }
        )

    def soft_deleted_domain(self, at: datetime) -> dict[str, Any]:
        return {"deleted_at": iso_stamp(at)}

    def fake_domain(self, rng: Random) -> dict[str, Any]:
        return {
            "account_value": f"{rng.uniform(0, 250_000):.2f}",
            "owner_rep": rng.choice(_REPS),
            "credit_limit": f"{rng.choice([0, 5_000, 10_000, 50_000, 100_000])}.00",
        }
