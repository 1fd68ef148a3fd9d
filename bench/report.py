"""What every benchmark does with its result: the JSON object its issue names, written to a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console


def write_json(out: dict[str, Any], path: Path, console: Console) -> None:
    """Write a benchmark's result object to `path` (folders created) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    console.print(f"wrote {path}")
