"""The nightly delta sync: a spoke's changed domain rows into the lake, atomically with the watermark."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl

from hubspoke.lake import Lake, Progress, sql_in
from hubspoke.timestamps import from_micros, to_micros
from lake_schema import Contract
from spokes import Spoke


@dataclass
class SyncReport:
    """What one sync of one domain table did."""

    domain: str
    table: str
    extracted: int = 0
    upserted: int = 0
    deleted: int = 0
    quarantined: int = 0
    released: int = 0
    watermark_before: datetime | None = None
    watermark_after: datetime | None = None
    version: int = 0
    committed: bool = False
    quarantine_reasons: Counter[str] = field(default_factory=Counter)


def watermark_app(contract: Contract) -> str:
    """The app id under which a domain table records its sync watermark."""
    return f"sync.{contract.table_name}"


def watermark(lake: Lake, contract: Contract) -> datetime | None:
    """The source time up to which the domain table holds every change (None: never synced)."""
    micros = lake.table(contract).progress(watermark_app(contract))
    return None if micros is None else from_micros(micros)


def sync_domain(lake: Lake, spoke: Spoke, contract: Contract) -> SyncReport:
    """Extract what changed in `spoke` since the watermark, check it, and merge it into the lake.

    The domain rows, the propagated deletes and the new watermark land in one Delta commit, so a
    sync that dies leaves the old table and the old watermark; the rerun extracts the same rows.
    Rows that break the contract or whose customer has no live identity go to
    `sync_quarantine` first and are retried on every sync until they load.
    """
    table = lake.table(contract)
    quarantine = lake.table("sync_quarantine")
    key = contract.key_fields[0]
    report = SyncReport(domain=contract.owner, table=contract.table_name)
    report.watermark_before = watermark(lake, contract)

    changes = spoke.extract_changes(report.watermark_before)
    report.extracted = len(changes.upserts) + len(changes.deleted_keys)
    held = quarantine.read(columns=["customer_id"], where=pl.col("domain") == contract.table_name)[
        "customer_id"
    ]
    changed_keys = {r[key] for r in changes.upserts} | set(changes.deleted_keys)
    retry = sorted(set(held.to_pylist()) - changed_keys)
    candidates = changes.upserts + spoke.fetch_domain_rows(retry)

    live = _live_identities(lake, contract.entity, {r[key] for r in candidates})
    good: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    for row in candidates:
        problems = contract.row_problems(row)
        if problems:
            report.quarantine_reasons["breaks the contract"] += 1
        elif row[key] not in live:
            problems = [f"no live {contract.entity} identity {row[key]!r} in the hub yet"]
            report.quarantine_reasons["no live identity"] += 1
        if problems:
            reason = "; ".join(problems)
            bad.append(
                {
                    "domain": contract.table_name,
                    "customer_id": str(row[key]),
                    "reason": reason,
                    "row": json.dumps(row, default=str, sort_keys=True),
                    "source_updated_at": row.get("updated_at")
                    if isinstance(row.get("updated_at"), datetime)
                    else None,
                    "quarantined_at": now,
                }
            )
        else:
            good.append(row)
    report.quarantined = len(bad)

    # Quarantine first: if the data commit below never happens, the rerun re-extracts these rows.
    if bad:
        quarantine.upsert(
            quarantine.contract.to_arrow(bad), step="quarantine", domain=contract.table_name
        )

    high = changes.high_watermark
    new_mark = max(filter(None, [report.watermark_before, high]), default=None)
    moved = new_mark is not None and new_mark != report.watermark_before
    if good or changes.deleted_keys or moved:
        metrics = table.upsert(
            contract.to_arrow(good),
            newer_than="updated_at",
            delete_keys=changes.deleted_keys,
            progress=Progress(watermark_app(contract), to_micros(new_mark)) if new_mark else None,
            step="nightly sync",
            spoke=spoke.name,
            watermark=new_mark.isoformat() if new_mark else "",
        )
        report.upserted = metrics["num_target_rows_inserted"] + metrics["num_target_rows_updated"]
        report.deleted = metrics["num_target_rows_deleted"]
        report.committed = True
    report.watermark_after = new_mark

    loaded = (
        {r[key] for r in good}
        | set(changes.deleted_keys)
        | (set(retry) - {r[key] for r in candidates})
    )
    release = sorted(set(held.to_pylist()) & loaded)
    if release:
        quarantine.delete_where(
            f"{sql_in('domain', [contract.table_name])} AND {sql_in('customer_id', release)}",
            step="release quarantine",
        )
    report.released = len(release)
    report.version = table.version()
    return report


@dataclass
class Reconciliation:
    """Spoke against lake for one domain table, after a sync."""

    table: str
    spoke_rows: int
    lake_rows: int
    quarantined: int
    missing_in_lake: list[str]
    extra_in_lake: list[str]
    differing: list[str]
    spoke_hash: str
    lake_hash: str

    @property
    def ok(self) -> bool:
        """True when every live spoke row not in quarantine is in the lake, as it is at the spoke."""
        return not (self.missing_in_lake or self.extra_in_lake or self.differing)


def reconcile(lake: Lake, spoke: Spoke, contract: Contract) -> Reconciliation:
    """Compare counts and an order-independent hash of (key, source updated_at), spoke vs lake."""
    key = contract.key_fields[0]
    quarantined = set(
        lake.table("sync_quarantine")
        .read(columns=["customer_id"], where=pl.col("domain") == contract.table_name)["customer_id"]
        .to_pylist()
    )
    at_spoke = {k: v for k, v in spoke.domain_versions().items() if k not in quarantined}
    rows = lake.table(contract).read(columns=[key, "updated_at"]).to_pylist()
    in_lake = {r[key]: r["updated_at"] for r in rows}
    return Reconciliation(
        table=contract.table_name,
        spoke_rows=len(at_spoke),
        lake_rows=len(in_lake),
        quarantined=len(quarantined),
        missing_in_lake=sorted(set(at_spoke) - set(in_lake)),
        extra_in_lake=sorted(set(in_lake) - set(at_spoke)),
        differing=sorted(k for k in set(at_spoke) & set(in_lake) if at_spoke[k] != in_lake[k]),
        spoke_hash=_fingerprint(at_spoke),
        lake_hash=_fingerprint(in_lake),
    )


def _fingerprint(versions: dict[str, datetime]) -> str:
    digest = 0
    for k, at in versions.items():  # XOR of per-row hashes: independent of row order
        h = hashlib.blake2b(f"{k}|{to_micros(at)}".encode(), digest_size=16).digest()
        digest ^= int.from_bytes(h, "big")
    return f"{digest:032x}"


def _live_identities(lake: Lake, entity: str | None, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    identity = lake.catalog.identity(entity or "customer")
    key = identity.key_fields[0]
    rows = lake.table(identity).read(
        columns=[key],
        where=pl.col(key).is_in(list(ids)) & (pl.col("deleted") == False),  # noqa: E712
    )
    return set(rows[key].to_pylist())
