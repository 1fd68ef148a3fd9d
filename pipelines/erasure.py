"""The right-to-erasure job: the same hard delete as `hubspoke erase`, launched with run config."""

import json

import dagster as dg
from pydantic import Field

from hubspoke.erasure import ErasureRequest, erase
from pipelines.jobs import WRITER_TAG
from pipelines.resources import HubspokeResource


class ErasureConfig(dg.Config):
    """Who is to be erased, and who asked."""

    customer_id: str = Field(description="Id of the customer to erase (CustomerIdentity.id).")
    requested_by: str = Field(description="Who asked: a ticket, a team or a role; never PII.")


@dg.op(pool="hub")  # the hub's writer slot: no ingestion run rewrites the log at the same time
def erase_customer(
    context: dg.OpExecutionContext, config: ErasureConfig, hubspoke: HubspokeResource
) -> dg.Output[str]:
    """Remove the customer from the lake, every spoke and the bus log; record a certificate."""
    request = ErasureRequest(config.customer_id, config.requested_by)
    with hubspoke.stack(create=False) as stack:
        certificate = erase(stack, request)
    tables = json.loads(certificate["tables"])
    context.log.info(f"erasure certificate {certificate['certificate_id']} written")
    return dg.Output(
        certificate["certificate_id"],
        metadata={
            "subject_hash": certificate["subject_hash"],
            "requested_by": certificate["requested_by"],
            "rows_removed": sum(t["rows"] for t in tables.values()),
            "files_rewritten": sum(t["files_rewritten"] for t in tables.values()),
            "files_vacuumed": sum(t["files_vacuumed"] for t in tables.values()),
            "spoke_rows_deleted": sum(json.loads(certificate["spokes"]).values()),
            "bus_messages_forgotten": certificate["bus_messages_forgotten"],
            "tables": dg.MetadataValue.json(tables),
        },
    )


@dg.job(
    description="Right to erasure: hard-delete one customer everywhere and certify it.",
    tags={WRITER_TAG: "hub"},
    executor_def=dg.in_process_executor,
)
def erasure_job() -> None:
    """One op: erasure is a single ordered procedure, not a graph of assets."""
    erase_customer()
