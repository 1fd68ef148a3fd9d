"""The one resource every Hubspoke asset, check and sensor uses: the stack under a home folder."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from hubspoke.config import Settings
from hubspoke.stack import Stack


def _home_from_settings() -> str:
    return str(Settings.from_env().home)


class HubspokeResource(dg.ConfigurableResource):
    """The embedded Hubspoke stack (lake, bus, hub and spokes) under one home folder."""

    home: str = Field(
        default_factory=_home_from_settings,
        description="Folder with lake/, spokes/, bus/ and hub/ (HUBSPOKE_HOME by default).",
    )

    def settings(self) -> Settings:
        """The stack's settings: this home, the rest from the environment."""
        return Settings.from_env(Path(self.home))

    def stack(self, *, create: bool = True) -> Stack:
        """The stack at `home`, created when missing unless `create` is False (then HomeNotFound)."""
        settings = self.settings()
        return Stack.create(settings) if create else Stack.open(settings)
