"""Loads every contract under lake_schema/contracts and answers questions about them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path

import yaml
from pydantic import ValidationError

from lake_schema.contract import Contract, ContractError

CONTRACTS_DIR = Path(__file__).parent / "contracts"


@dataclass(frozen=True)
class Catalog:
    """All contracts, by name."""

    contracts: dict[str, Contract]

    def __iter__(self) -> Iterator[Contract]:
        return iter(self.contracts.values())

    @cached_property
    def _by_any_name(self) -> dict[str, Contract]:
        return {n: c for c in self.contracts.values() for n in (c.name, c.table_name)}

    def get(self, name: str) -> Contract:
        """The contract called `name` (CamelCase or snake_case table name)."""
        if name in self._by_any_name:
            return self._by_any_name[name]
        raise ContractError(
            f"no contract named {name!r}; known: {', '.join(sorted(self.contracts))}"
        )

    def identity(self, entity: str) -> Contract:
        """The identity contract of `entity`."""
        for c in self.contracts.values():
            if c.kind == "identity" and c.entity == entity:
                return c
        known = sorted(c.entity for c in self.contracts.values() if c.kind == "identity")
        raise ContractError(f"no identity contract for entity {entity!r}; known: {known}")

    def extensions(self, entity: str | None = None) -> list[Contract]:
        """Domain extension contracts, of one entity or of all."""
        return [
            c
            for c in self.contracts.values()
            if c.kind == "extension" and entity in (None, c.entity)
        ]

    def identities(self) -> list[Contract]:
        """Identity contracts, one per entity."""
        return [c for c in self.contracts.values() if c.kind == "identity"]

    def extension(self, domain: str, entity: str = "customer") -> Contract:
        """The extension of `entity` owned by `domain`."""
        for c in self.extensions(entity):
            if domain in (c.owner, c.extension_name, c.name, c.table_name):
                return c
        known = sorted(c.owner for c in self.extensions(entity))
        raise ContractError(f"no {entity} domain {domain!r}; known domains: {', '.join(known)}")

    def tables(self) -> list[Contract]:
        """Every contract that is stored as a lake table (everything but bus events)."""
        return [c for c in self.contracts.values() if c.kind != "event"]


def load_contract(path: Path) -> Contract:
    """Parse one contract file, with errors that name the file and the offending entry."""
    try:
        return Contract.model_validate(yaml.safe_load(path.read_text()))
    except (ValidationError, yaml.YAMLError) as exc:
        raise ContractError(f"{path.name}: {exc}") from exc


@cache
def load_catalog(directory: Path = CONTRACTS_DIR) -> Catalog:
    """Every contract in `directory`, keyed by name."""
    contracts = [load_contract(p) for p in sorted(directory.glob("*.yaml"))]
    return Catalog({c.name: c for c in contracts})
