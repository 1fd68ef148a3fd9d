"""Realistic spoke traffic, always through the spokes' own write paths."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from random import Random

from hubspoke.stack import Stack
from spokes import Spoke

_FIRST = [
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Dana",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "Ivan",
    "Joan",
    "Ken",
    "Lin",
    "Margaret",
    "Niklaus",
    "Olga",
    "Radia",
    "Sophie",
    "Tim",
]
_LAST = [
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Scott",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Lamarr",
    "Sutherland",
    "Clarke",
    "Thompson",
    "Chen",
    "Hamilton",
    "Wirth",
    "Perlman",
]
_ORIGIN_WEIGHTS = {"sales": 5, "support": 3, "billing": 2}
"""Where customers are first created: most in sales, some at support or billing."""


@dataclass
class Traffic:
    """Operations performed, by kind and by spoke."""

    operations: Counter[str] = field(default_factory=Counter)

    def count(self, kind: str, spoke: Spoke) -> None:
        """Record one operation."""
        self.operations[kind] += 1
        self.operations[f"{kind}@{spoke.name}"] += 1


def fake_person(rng: Random) -> tuple[str, str]:
    """A plausible name and e-mail address."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    return f"{first} {last}", f"{first}.{last}.{rng.randrange(10**6)}@example.com".lower()


class Simulator:
    """Drives the demo spokes like their users would."""

    def __init__(self, stack: Stack, seed: int = 42) -> None:
        self.stack = stack
        self.rng = Random(seed)
        self.spokes = list(stack.spokes.values())
        self.traffic = Traffic()

    def create(self) -> str:
        """A new customer in a spoke chosen by the origin weights, with that spoke's domain row."""
        spoke = self.stack.spokes[
            self.rng.choices(list(_ORIGIN_WEIGHTS), weights=list(_ORIGIN_WEIGHTS.values()))[0]
        ]
        name, email = fake_person(self.rng)
        self.traffic.count("create", spoke)
        return spoke.create_customer(name, email, spoke.fake_domain(self.rng))

    def update(self) -> None:
        """A name or e-mail change in a spoke that knows the customer."""
        spoke, customer_id = self._known()
        if customer_id is None:
            return
        name, email = fake_person(self.rng)
        if self.rng.random() < 0.5:
            spoke.update_customer(customer_id, email=email)
        else:
            spoke.update_customer(customer_id, name=name)
        self.traffic.count("update", spoke)

    def delete(self) -> None:
        """A customer deleted in one spoke."""
        spoke, customer_id = self._known()
        if customer_id is not None:
            spoke.delete_customer(customer_id)
            self.traffic.count("delete", spoke)

    def domain_change(self) -> None:
        """A spoke's own data about a customer it knows changes (or appears)."""
        spoke, customer_id = self._known()
        if customer_id is not None:
            spoke.save_domain(customer_id, spoke.fake_domain(self.rng))
            self.traffic.count("domain", spoke)

    def run(
        self,
        operations: int,
        rate: float | None = None,
        on_step: Callable[[int], None] | None = None,
    ) -> Traffic:
        """A realistic mix: 30% creates, 35% identity updates, 5% deletes, 30% domain changes."""
        actions = [self.create, self.update, self.delete, self.domain_change]
        weights = [30, 35, 5, 30]
        started = time.monotonic()
        for i in range(operations):
            self.rng.choices(actions, weights=weights)[0]()
            if on_step:
                on_step(i + 1)
            if rate:
                ahead = (i + 1) / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        return self.traffic

    def seed(self, customers: int, on_step: Callable[[str, int], None] | None = None) -> Traffic:
        """The demo's history: creates in several spokes, then each spoke's own data, identity
        updates from more than one spoke and some deletes, propagated in real time."""
        step = on_step or (lambda phase, n: None)
        ids = []
        for i in range(customers):
            ids.append(self.create())
            step("create", i + 1)
        self.stack.propagate()  # every spoke now holds every customer
        shares = {"sales": 0.6, "support": 0.5, "billing": 0.7}
        for spoke in self.spokes:
            for customer_id in ids:
                if self.rng.random() < shares.get(spoke.name, 0.5) and not spoke.has_domain_row(
                    customer_id
                ):
                    spoke.save_domain(customer_id, spoke.fake_domain(self.rng))
                    self.traffic.count("domain", spoke)
            step(f"domain data at {spoke.name}", len(ids))
        for i in range(customers // 5):
            self.update()
            step("update", i + 1)
        for i in range(max(1, customers // 50)):
            self.delete()
            step("delete", i + 1)
        self.stack.propagate()
        return self.traffic

    def _known(self) -> tuple[Spoke, str | None]:
        spoke = self.rng.choice(self.spokes)
        return spoke, spoke.pick_live_customer(self.rng)
