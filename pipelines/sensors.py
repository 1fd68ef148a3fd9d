"""Identity events are ingested as soon as spokes emit them."""

import json

import dagster as dg

from hubspoke.bus import IDENTITY_TOPIC
from hubspoke.ingest import HUB_SUBSCRIBER
from hubspoke.stack import HomeNotFound, Stack
from pipelines.jobs import identity_ingestion_job
from pipelines.resources import HubspokeResource

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
        waiting, first, last = spoke.outbox_backlog()
        if waiting:
            parts.append(f"{name}:{first}-{last}")
    return "|".join(parts) or None


@dg.sensor(
    name="identity_events_sensor",
    job=identity_ingestion_job,
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Observe how fresh customer_identity is, and launch a catch-up ingestion run when identity"
        " events wait longer than HUBSPOKE_CATCH_UP_AFTER_S (no `hubspoke consume --follow` running)."
    ),
)
def identity_events_sensor(
    context: dg.SensorEvaluationContext, hubspoke: HubspokeResource
) -> dg.SensorResult | dg.SkipReason:
    """Record each new identity table version as an observation; catch up a stalled backlog."""
    try:
        stack = hubspoke.stack(create=False)
    except HomeNotFound as exc:
        return dg.SkipReason(str(exc))
    with stack:
        key = backlog_key(stack)
        lag_s = stack.identity_lag_s()
        catch_up_after = stack.settings.catch_up_after_s
        observations, cursor = _freshness(stack, context.cursor, lag_s)
    if key is None:
        return dg.SensorResult(
            asset_events=observations,
            cursor=cursor,
            skip_reason="no identity events wait in the spokes' outboxes or on the bus",
        )
    # A broker may not say how old its backlog is (RabbitMQ): unknown age counts as stalled.
    if 0 < lag_s < catch_up_after:
        return dg.SensorResult(
            asset_events=observations,
            cursor=cursor,
            skip_reason=f"events wait {lag_s:.1f}s, under {catch_up_after:g}s: the consumer has them",
        )
    queued = context.instance.get_runs_count(
        dg.RunsFilter(job_name=identity_ingestion_job.name, statuses=_NOT_YET_INGESTING)
    )
    if queued:
        return dg.SensorResult(
            asset_events=observations,
            cursor=cursor,
            skip_reason="an ingestion run that has not started yet will take these events",
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"identity-backlog {key}")],
        asset_events=observations,
        cursor=cursor,
    )


def _freshness(
    stack: Stack, cursor: str | None, lag_s: float
) -> tuple[list[dg.AssetObservation], str]:
    """An observation per identity table whose Delta version moved since the last tick."""
    seen = json.loads(cursor) if cursor else {}
    observations = []
    for contract in stack.catalog.identities():
        table = stack.lake.table(contract)
        version = table.version()
        if seen.get(contract.table_name) != version:
            seen[contract.table_name] = version
            observations.append(
                dg.AssetObservation(
                    asset_key=contract.table_name,
                    metadata={
                        "delta_version": dg.MetadataValue.int(version),
                        "lag_s": dg.MetadataValue.float(lag_s),
                        "pending": dg.MetadataValue.int(stack.hub.pending()),
                        "dagster/row_count": dg.MetadataValue.int(table.count()),
                    },
                )
            )
    return observations, json.dumps(seen, sort_keys=True)
