"""What one GraphQL request carries: the snapshot view it reads and its batch loaders."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader

from hubspoke_graphql import reads
from hubspoke_graphql.snapshot import View
from lake_schema import Contract

Row = dict[str, Any]


@dataclass
class RequestContext:
    """Every resolver of a request reads the same view, so one answer is one consistent state."""

    view: View
    loaders: dict[str, DataLoader[str, Row | None]] = field(default_factory=dict)

    def rows(self, contract: Contract) -> DataLoader[str, Row | None]:
        """The request's loader of `contract`'s rows by key: one query per table per request."""
        loader = self.loaders.get(contract.table_name)
        if loader is None:
            loader = self.loaders[contract.table_name] = DataLoader(
                load_fn=lambda keys: self._load(contract, keys)
            )
        return loader

    async def _load(self, contract: Contract, keys: Sequence[str]) -> list[Row | None]:
        found = await asyncio.to_thread(reads.by_keys, self.view, contract, keys)
        by_key = {row[reads.key_of(contract)]: row for row in found}
        return [by_key.get(key) for key in keys]
