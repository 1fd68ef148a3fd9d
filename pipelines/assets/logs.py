"""Lake tables no asset materializes on its own (the hub's side logs and the sync quarantine).

They are written as a side effect of identity ingestion and the domain syncs; declaring them
puts their owners, schema, checks and maintenance in the catalog like every other table.
"""

import dagster as dg

from lake_schema import load_catalog
from pipelines.assets.domains import DOMAIN_ASSETS
from pipelines.assets.identity import IDENTITY_SPECS
from pipelines.metadata import table_spec

_materialized = {spec.key for spec in IDENTITY_SPECS} | {
    key for asset in DOMAIN_ASSETS for key in asset.keys
}

SIDE_TABLE_SPECS = [
    table_spec(contract)
    for contract in load_catalog().tables()
    if dg.AssetKey(contract.table_name) not in _materialized
]
