"""Identity ingestion: the hub's log of identity events and the identity tables it merges into."""

from collections.abc import Iterator

import dagster as dg

from hubspoke.ingest import BatchReport
from lake_schema import Contract, load_catalog
from pipelines.metadata import table_spec, table_state
from pipelines.pools import HUB_POOL
from pipelines.resources import HubspokeResource

_catalog = load_catalog()
EVENT_LOG = _catalog.get("identity_events")
IDENTITIES: list[Contract] = _catalog.identities()
"""One identity table per entity (customer now; product and invoice later)."""


# The log is listed first: each micro-batch commits it before merging the identity tables.
IDENTITY_SPECS = [table_spec(c) for c in [EVENT_LOG, *IDENTITIES]]


@dg.multi_asset(
    name="ingest_identity_events",
    specs=IDENTITY_SPECS,
    pool=HUB_POOL,  # one hub writer at a time, also for runs launched by hand from the UI
)
def ingest_identity_events(
    context: dg.AssetExecutionContext, hubspoke: HubspokeResource
) -> Iterator[dg.MaterializeResult]:
    """Relay the spokes' outboxes, ingest the bus into the lake, broadcast resolved identities."""
    with hubspoke.stack() as stack:
        round_ = stack.propagate()
        report: BatchReport = round_["ingest"]
        delivered = sum(round_["broadcast_applied"].values())
        context.log.info(
            f"relayed {round_['relayed']}, received {report.received}"
            f" ({dict(report.dispositions)}, dead-lettered {report.dead_lettered}),"
            f" broadcast {report.broadcast}, applied at spokes {delivered}"
        )
        yield dg.MaterializeResult(
            asset_key=EVENT_LOG.table_name,
            metadata={
                "relayed": dg.MetadataValue.int(round_["relayed"]),
                "received": dg.MetadataValue.int(report.received),
                **{
                    disposition: dg.MetadataValue.int(report.dispositions[disposition])
                    for disposition in ("applied", "duplicate", "stale", "parked")
                },
                "dead_lettered": dg.MetadataValue.int(report.dead_lettered),
                "max_lag_s": dg.MetadataValue.float(float(report.max_lag_s)),
                **table_state(stack.lake.table(EVENT_LOG)),
            },
        )
        # The hub reports one round for every entity, so each identity table shows its totals.
        for contract in IDENTITIES:
            yield dg.MaterializeResult(
                asset_key=contract.table_name,
                metadata={
                    "broadcast": dg.MetadataValue.int(report.broadcast),
                    "applied_at_spokes": dg.MetadataValue.int(delivered),
                    **table_state(stack.lake.table(contract)),
                },
            )
