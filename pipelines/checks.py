"""Checks that the lake tells the same story as the spokes it copies."""

import dagster as dg

from hubspoke.quality import reconciliation_outcome
from hubspoke.sync import reconcile
from lake_schema import Contract, load_catalog
from pipelines.assets.domains import owning_spoke
from pipelines.metadata import first_keys
from pipelines.resources import HubspokeResource


def build_reconciliation_check(contract: Contract) -> dg.AssetChecksDefinition:
    """Spoke against lake for one domain table: every live, unquarantined row, as it is."""

    @dg.asset_check(
        asset=contract.table_name,
        name="reconciles_with_spoke",
        description=(
            f"Every live {contract.owner} row not in quarantine is in {contract.table_name}"
            " with the same source updated_at, and the lake holds nothing else."
        ),
    )
    def reconciles(hubspoke: HubspokeResource) -> dg.AssetCheckResult:
        """Compare keys and source change times of the spoke and the lake."""
        with hubspoke.stack() as stack:
            rec = reconcile(stack.lake, owning_spoke(stack, contract), contract)
        outcome = reconciliation_outcome(rec)
        return dg.AssetCheckResult(
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if outcome.passed else outcome.summary,
            metadata={
                "spoke_rows": dg.MetadataValue.int(rec.spoke_rows),
                "lake_rows": dg.MetadataValue.int(rec.lake_rows),
                "quarantined": dg.MetadataValue.int(rec.quarantined),
                "missing_in_lake": first_keys(rec.missing_in_lake),
                "extra_in_lake": first_keys(rec.extra_in_lake),
                "differing": first_keys(rec.differing),
                "spoke_hash": dg.MetadataValue.text(rec.spoke_hash),
                "lake_hash": dg.MetadataValue.text(rec.lake_hash),
            },
        )

    return reconciles


def build_convergence_check(contract: Contract) -> dg.AssetChecksDefinition:
    """Every spoke of the entity holds each identity at the hub's version."""

    @dg.asset_check(
        asset=contract.table_name,
        name="spokes_converged",
        description=(
            f"Every spoke holds every {contract.entity} of {contract.table_name} at the hub's"
            " version: broadcasts were delivered and applied. A warning, not an error: a hub"
            " consumer outside Dagster may have merged events the spokes get next round."
        ),
    )
    def converged(hubspoke: HubspokeResource) -> dg.AssetCheckResult:
        """Compare each spoke's hub version of every identity with the lake's."""
        key = contract.key_fields[0]
        with hubspoke.stack() as stack:
            rows = stack.lake.table(contract).read(columns=[key, "version"]).to_pylist()
            at_hub = {r[key]: r["version"] for r in rows}
            behind: dict[str, list[str]] = {}
            for name, spoke in stack.spokes.items():
                if spoke.entity != contract.entity:
                    continue
                held = {r[key]: r["version"] or 0 for r in spoke.identities()}
                behind[name] = sorted(k for k, v in at_hub.items() if held.get(k, 0) < v)
        return dg.AssetCheckResult(
            passed=not any(behind.values()),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "identities": dg.MetadataValue.int(len(at_hub)),
                **{
                    f"behind_at_{name}": dg.MetadataValue.int(len(ids))
                    for name, ids in behind.items()
                },
                "first_behind": first_keys(sorted({k for ids in behind.values() for k in ids})),
            },
        )

    return converged


RECONCILIATION_CHECKS = [build_reconciliation_check(c) for c in load_catalog().extensions()]
CONVERGENCE_CHECKS = [build_convergence_check(c) for c in load_catalog().identities()]
