"""Configuration in one place: every setting, its environment variable, default and check."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A setting has a value Hubspoke cannot use; the message names it and what is accepted."""


@dataclass(frozen=True)
class Settings:
    """Where the embedded stack lives and how it runs."""

    home: Path = Path(".hubspoke")
    """HUBSPOKE_HOME: folder with lake/, spokes/, bus/ and hub/."""
    schedule_timezone: str = "UTC"
    """HUBSPOKE_SCHEDULE_TZ: IANA time zone of the nightly sync at 02:00."""
    batch_size: int = 5000
    """HUBSPOKE_BATCH_SIZE: identity events per hub micro-batch."""

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.schedule_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"HUBSPOKE_SCHEDULE_TZ={self.schedule_timezone!r} is not an IANA time zone"
                " (for example UTC or Europe/Berlin)"
            ) from None
        if not 1 <= self.batch_size <= 1_000_000:
            raise ConfigError(
                f"HUBSPOKE_BATCH_SIZE={self.batch_size} must be between 1 and 1000000"
            )

    @classmethod
    def from_env(cls, home: Path | None = None) -> Settings:
        """Settings from the environment; `home` (from a CLI flag) wins over HUBSPOKE_HOME."""
        raw_batch = os.environ.get("HUBSPOKE_BATCH_SIZE", "5000")
        if not raw_batch.isdigit():
            raise ConfigError(f"HUBSPOKE_BATCH_SIZE={raw_batch!r} must be a whole number")
        return cls(
            home=home or Path(os.environ.get("HUBSPOKE_HOME", ".hubspoke")),
            schedule_timezone=os.environ.get("HUBSPOKE_SCHEDULE_TZ", "UTC"),
            batch_size=int(raw_batch),
        )
