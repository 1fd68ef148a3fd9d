"""Identity events are ingested as soon as spokes emit them."""

import dagster as dg

from hubspoke.bus import IDENTITY_TOPIC
from hubspoke.ingest import HUB_SUBSCRIBER
from hubspoke.stack import HomeNotFound, Stack
from pipelines.jobs import identity_ingestion_job
from pipelines.resources import HubspokeResource

_OUTBOX_PEEK = 1_000_000
"""Outbox rows read per spoke and tick; outboxes are drained every few seconds, so far fewer."""

_NOT_YET_INGESTING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
]


def backlog_key(stack: Stack) -> str | None:
    """A name for the identity events waiting in outboxes and on the bus; None when none wait.

    It changes whenever an event joins the backlog, so a new event always asks for a new run,
    while a failed run is not relaunched every tick for the same events.
    """
    parts = []
    on_bus = stack.hub.pending()
    if on_bus:
        oldest = stack.bus.oldest_pending_at(IDENTITY_TOPIC, HUB_SUBSCRIBER)
        parts.append(f"bus:{on_bus}@{oldest}")
    for name, spoke in sorted(stack.spokes.items()):
        if waiting := spoke.outbox(_OUTBOX_PEEK):
            parts.append(f"{name}:{waiting[0].seq}-{waiting[-1].seq}")
    return "|".join(parts) or None


@dg.sensor(
    name="identity_events_sensor",
    job=identity_ingestion_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Ingest identity events as soon as a spoke's outbox or the bus holds some.",
)
def identity_events_sensor(
    context: dg.SensorEvaluationContext, hubspoke: HubspokeResource
) -> dg.RunRequest | dg.SkipReason:
    """Request an ingestion run when identity events wait and no ingestion run is queued."""
    try:
        stack = hubspoke.stack(create=False)
    except HomeNotFound as exc:
        return dg.SkipReason(str(exc))
    with stack:
        key = backlog_key(stack)
    if key is None:
        return dg.SkipReason("no identity events wait in the spokes' outboxes or on the bus")
    queued = context.instance.get_runs_count(
        dg.RunsFilter(job_name=identity_ingestion_job.name, statuses=_NOT_YET_INGESTING)
    )
    if queued:
        return dg.SkipReason("an ingestion run that has not started yet will take these events")
    return dg.RunRequest(run_key=f"identity-backlog {key}")
