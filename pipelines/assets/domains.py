"""Domain extension tables: each domain's nightly copy in the lake, one asset per contract."""

from datetime import timedelta

import dagster as dg

from hubspoke.config import Settings
from hubspoke.stack import Stack
from hubspoke.sync import sync_domain
from lake_schema import Contract, load_catalog
from pipelines.metadata import asset_tags, definition_metadata, owners, table_state
from pipelines.pools import writer_pool
from pipelines.resources import HubspokeResource
from spokes import Spoke


def owning_spoke(stack: Stack, contract: Contract) -> Spoke:
    """The spoke that is the source of truth of a domain extension table."""
    spoke = stack.spokes.get(contract.owner)
    if spoke is None:
        raise dg.Failure(
            f"{contract.name} is owned by {contract.owner!r}, but the stack has no such spoke;"
            f" spokes: {', '.join(sorted(stack.spokes))}"
        )
    return spoke


class DomainSyncConfig(dg.Config):
    """Run options of a nightly sync (the launchpad's config)."""

    compare_keys: bool = False
    """Also compare the spoke's live keys with the lake's, to propagate deletes the spoke's
    triggers missed (what the reconciliation check reports as only in the lake)."""


NIGHTS_START = "2026-01-01"
"""First nightly partition: nights from here on can be backfilled from the UI."""


def nightly_partitions(settings: Settings, spoke: str) -> dg.DailyPartitionsDefinition:
    """One partition per night of `spoke`, each starting at its sync window in its time zone."""
    at, zone = settings.sync_window(spoke)
    return dg.DailyPartitionsDefinition(
        start_date=NIGHTS_START,
        timezone=zone.key,
        hour_offset=at.hour,
        minute_offset=at.minute,
    )


def build_domain_asset(contract: Contract, settings: Settings) -> dg.AssetsDefinition:
    """The asset that syncs one domain extension table from the spoke that owns it.

    A run is one night (a daily partition in the spoke's own time zone). The sync is
    incremental from the table's watermark, so running a night again, or a range of nights
    from the UI, is safe: each run loads what the lake lacks and commits nothing otherwise.
    """
    identity = load_catalog().identity(str(contract.entity))

    @dg.asset(
        name=contract.table_name,
        description=(
            f"{contract.description}\n\n{contract.name} v{contract.version}: shares its key"
            f" with {identity.name}, copied nightly from the {contract.owner} spoke."
        ),
        group_name=contract.owner,
        owners=owners(contract),
        kinds={"delta", "sqlite"},
        deps=[identity.table_name],
        metadata=definition_metadata(contract),
        tags=asset_tags(contract),
        pool=writer_pool(contract),  # one sync per table at a time: its watermark has one writer
        partitions_def=nightly_partitions(settings, contract.owner),
    )
    def sync(
        context: dg.AssetExecutionContext, config: DomainSyncConfig, hubspoke: HubspokeResource
    ) -> dg.MaterializeResult:
        """Merge what changed in the domain's spoke since the last watermark into the lake."""
        with hubspoke.stack() as stack:
            # sync_domain with the contract itself, not Stack.sync([owner]): that looks the
            # owner up among customer extensions only, and other entities will have domains too.
            report = sync_domain(
                stack.lake,
                owning_spoke(stack, contract),
                contract,
                overlap=timedelta(minutes=stack.settings.sync_overlap_min),
                batch_rows=stack.settings.sync_batch_rows,
                compare_keys=config.compare_keys,
            )
            context.log.info(
                f"{contract.table_name}: extracted {report.extracted}, upserted {report.upserted},"
                f" deleted {report.deleted}, quarantined {report.quarantined}"
                f" ({dict(report.quarantine_reasons)}), released {report.released}"
            )
            watermark = report.watermark_after
            return dg.MaterializeResult(
                metadata={
                    "extracted": dg.MetadataValue.int(report.extracted),
                    "upserted": dg.MetadataValue.int(report.upserted),
                    "deleted": dg.MetadataValue.int(report.deleted),
                    "hard_deleted": dg.MetadataValue.int(report.hard_deleted),
                    "keys_compared": dg.MetadataValue.bool(report.keys_compared),
                    "added_columns": dg.MetadataValue.text(", ".join(report.added_columns)),
                    "lag_s": dg.MetadataValue.float(
                        (context.partition_time_window.end - watermark).total_seconds()
                        if watermark
                        else 0.0
                    ),
                    "quarantined": dg.MetadataValue.int(report.quarantined),
                    "released": dg.MetadataValue.int(report.released),
                    "committed": dg.MetadataValue.bool(report.committed),
                    **{
                        f"{phase}_s": dg.MetadataValue.float(round(seconds, 3))
                        for phase, seconds in report.seconds.items()
                    },
                    "watermark": (
                        dg.MetadataValue.timestamp(watermark)
                        if watermark
                        else dg.MetadataValue.null()
                    ),
                    **table_state(stack.lake.table(contract)),
                }
            )

    return sync


DOMAIN_ASSETS = [build_domain_asset(c, Settings.from_env()) for c in load_catalog().extensions()]
"""Every domain extension in the catalog; a new contract file is a new asset, no code."""
