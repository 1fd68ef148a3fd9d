"""The billing spoke: invoices customers; keeps VAT numbers and payment terms."""

from __future__ import annotations

from datetime import datetime
from random import Random
from typing import Any

from spokes.base import IsoTextEncodings, LocalSchema, Spoke, parse_iso_stamp

_SQLITE = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    email_address TEXT NOT NULL,
    created TEXT NOT NULL,
    origin TEXT NOT NULL,
    modified TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    hub_version INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS billing_accounts (
    customer_id TEXT PRIMARY KEY,
    vat_id TEXT,
    terms_days INTEGER NOT NULL,   -- 0 means prepaid
    modified TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS billing_accounts_modified ON billing_accounts (modified);
"""

_POSTGRES = """
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    email_address TEXT NOT NULL,
    created TEXT NOT NULL,
    origin TEXT NOT NULL,
    modified TEXT NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    hub_version BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS billing_accounts (
    customer_id TEXT PRIMARY KEY,
    vat_id TEXT,
    terms_days INTEGER NOT NULL,   -- 0 means prepaid
    modified TEXT COLLATE "C" NOT NULL, -- byte order: fixed-width ISO text sorts as instants
    removed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS billing_accounts_modified ON billing_accounts (modified);
"""

_MARIADB = """
CREATE TABLE IF NOT EXISTS customers (
    id VARCHAR(36) PRIMARY KEY,    -- MariaDB cannot key a TEXT column
    display_name TEXT NOT NULL,
    email_address TEXT NOT NULL,
    created CHAR(27) NOT NULL,     -- ISO-8601 UTC text, always 27 characters
    origin VARCHAR(64) NOT NULL,
    modified CHAR(27) NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0,
    hub_version BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS billing_accounts (
    customer_id VARCHAR(36) PRIMARY KEY,
    vat_id VARCHAR(64),
    terms_days INTEGER NOT NULL,   -- 0 means prepaid
    modified CHAR(27) NOT NULL,
    removed INTEGER NOT NULL DEFAULT 0
) ENGINE=InnoDB;
CREATE INDEX IF NOT EXISTS billing_accounts_modified ON billing_accounts (modified);
"""

SCHEMA = LocalSchema(
    ddl={"sqlite": _SQLITE, "postgres": _POSTGRES, "mariadb": _MARIADB},
    identity_table="customers",
    identity_key="id",
    hub_version="hub_version",
    identity_columns={
        "id": "id",
        "name": "display_name",
        "email": "email_address",
        "created_at": "created",
        "created_by": "origin",
        "updated_at": "modified",
        "deleted": "removed",
    },
    domain_table="billing_accounts",
    domain_key="customer_id",
    domain_updated="modified",
    domain_deleted="removed = 1",
)


def payment_terms(days: int) -> str:
    """Billing's term length in days as the contract's payment terms code."""
    return "PREPAID" if days == 0 else f"NET{days}"


class BillingSpoke(IsoTextEncodings, Spoke):
    """Billing system: ISO text stamps, 0/1 flags, payment terms as a number of days."""

    name = "billing"
    schema = SCHEMA

    def domain_to_contract(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "customer_id": row["customer_id"],
            "vat_number": row["vat_id"],
            "payment_terms": payment_terms(row["terms_days"]),
            "updated_at": parse_iso_stamp(row["modified"]),
        }

    def soft_deleted_domain(self, at: datetime) -> dict[str, Any]:
        return {"removed": 1}

    def fake_domain(self, rng: Random) -> dict[str, Any]:
        vat = (
            None
            if rng.random() < 0.2
            else f"{rng.choice(['DE', 'FR', 'NL', 'IE'])}{rng.randrange(10**8, 10**9)}"
        )
        return {"vat_id": vat, "terms_days": rng.choice([0, 15, 30, 30, 30, 60, 90]), "removed": 0}
