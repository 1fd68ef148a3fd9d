"""The support spoke: a legacy help desk with its own names, codes and encodings."""

from __future__ import annotations

from datetime import datetime
from random import Random
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from hubspoke.timestamps import from_micros, to_micros
from spokes.base import STAMP, LocalSchema, Spoke

TIERS = {"B": "basic", "S": "silver", "G": "gold", "P": "platinum"}
"""Legacy tier codes -> contract values; any other code breaks the contract and is quarantined."""

_SQLITE = """
CREATE TABLE IF NOT EXISTS CLIENT (
    CLNT_NO TEXT PRIMARY KEY,
    CLNT_NM TEXT NOT NULL,
    E_MAIL TEXT NOT NULL,
    CRT_TS INTEGER NOT NULL,   -- microseconds since 1970-01-01 UTC
    CRT_SYS TEXT NOT NULL,
    UPD_TS INTEGER NOT NULL,
    DEL_FLG TEXT NOT NULL DEFAULT 'N',
    HUB_VER INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS SUPP_PROF (
    CLNT_NO TEXT PRIMARY KEY,
    TIER_CD TEXT NOT NULL,     -- B, S, G, P
    TKT_CNT TEXT NOT NULL,     -- ticket count, stored as text by the legacy app
    LAST_CHG INTEGER NOT NULL, -- microseconds since 1970-01-01 UTC
    DEL_FLG TEXT NOT NULL DEFAULT 'N'
);
CREATE INDEX IF NOT EXISTS SUPP_PROF_LAST_CHG ON SUPP_PROF (LAST_CHG);
"""

# No PostgreSQL variant: PostgreSQL folds the legacy app's unquoted upper-case names to lower
# case, so rows would come back under other names than the ones this module reads.
_MARIADB = """
CREATE TABLE IF NOT EXISTS CLIENT (
    CLNT_NO VARCHAR(36) PRIMARY KEY,  -- MariaDB cannot key a TEXT column
    CLNT_NM TEXT NOT NULL,
    E_MAIL TEXT NOT NULL,
    CRT_TS BIGINT NOT NULL,           -- microseconds since 1970-01-01 UTC
    CRT_SYS VARCHAR(64) NOT NULL,
    UPD_TS BIGINT NOT NULL,
    DEL_FLG CHAR(1) NOT NULL DEFAULT 'N',
    HUB_VER BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB;
CREATE TABLE IF NOT EXISTS SUPP_PROF (
    CLNT_NO VARCHAR(36) PRIMARY KEY,
    TIER_CD VARCHAR(8) NOT NULL,      -- B, S, G, P
    TKT_CNT VARCHAR(32) NOT NULL,     -- ticket count, stored as text by the legacy app
    LAST_CHG BIGINT NOT NULL,         -- microseconds since 1970-01-01 UTC
    DEL_FLG CHAR(1) NOT NULL DEFAULT 'N'
) ENGINE=InnoDB;
CREATE INDEX IF NOT EXISTS SUPP_PROF_LAST_CHG ON SUPP_PROF (LAST_CHG);
"""

SCHEMA = LocalSchema(
    ddl={"sqlite": _SQLITE, "mariadb": _MARIADB},
    identity_table="CLIENT",
    identity_key="CLNT_NO",
    hub_version="HUB_VER",
    identity_columns={
        "id": "CLNT_NO",
        "name": "CLNT_NM",
        "email": "E_MAIL",
        "created_at": "CRT_TS",
        "created_by": "CRT_SYS",
        "updated_at": "UPD_TS",
        "deleted": "DEL_FLG",
    },
    domain_table="SUPP_PROF",
    domain_key="CLNT_NO",
    domain_updated="LAST_CHG",
    domain_deleted="DEL_FLG = 'Y'",
)


class SupportSpoke(Spoke):
    """Legacy help desk: epoch-microsecond stamps, Y/N flags, coded tiers, counts as text."""

    name = "support"
    schema = SCHEMA

    def stamp_to_local(self, value: datetime) -> int:
        return to_micros(value)

    def stamp_from_local(self, value: int) -> datetime:
        return from_micros(int(value))

    def stamps_to_arrow(self, values: pa.Array) -> pa.Array:
        return pc.cast(pc.cast(values, pa.int64()), STAMP)

    def flag_to_local(self, deleted: bool) -> str:
        return "Y" if deleted else "N"

    def domain_to_contract(self, row: dict[str, Any]) -> dict[str, Any]:
        tickets = row["TKT_CNT"].strip()
        return {
            "customer_id": row["CLNT_NO"],
            # An unknown code is passed through as is, so the contract check names it.
            "support_tier": TIERS.get(row["TIER_CD"], row["TIER_CD"]),
            "lifetime_tickets": int(tickets) if tickets.lstrip("-").isdigit() else tickets,
            "updated_at": self.stamp_from_local(row["LAST_CHG"]),
        }

    def soft_deleted_domain(self, at: datetime) -> dict[str, Any]:
        return {"DEL_FLG": "Y"}

    def fake_domain(self, rng: Random) -> dict[str, Any]:
        # About one profile in two hundred carries a retired tier code, as real legacy data does.
        code = "X" if rng.random() < 0.005 else rng.choice("BBBSSGP")
        return {"TIER_CD": code, "TKT_CNT": str(rng.randint(0, 120)), "DEL_FLG": "N"}
