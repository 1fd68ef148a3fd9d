"""A seeded Hubspoke home with identity events still waiting, for the Dagster definitions."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from hubspoke.config import Settings
from hubspoke.simulate import Simulator
from hubspoke.stack import Stack
from pipelines.resources import HubspokeResource


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """40 seeded customers (propagated), then 50 operations of traffic left unpropagated."""
    with Stack.create(Settings(home=tmp_path)) as stack:
        Simulator(stack).seed(40)
        Simulator(stack, seed=7).run(50)
        assert stack.status()["events"]["pending"] > 0
    return tmp_path


@pytest.fixture
def resources(home: Path) -> dict[str, HubspokeResource]:
    """The resources of the code location, pointed at the seeded home."""
    return {"hubspoke": HubspokeResource(home=str(home))}


@pytest.fixture
def stack(home: Path) -> Iterator[Stack]:
    """The seeded stack, for looking at what the assets did."""
    with Stack.open(Settings(home=home)) as opened:
        yield opened
