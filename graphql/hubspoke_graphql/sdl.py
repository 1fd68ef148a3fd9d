"""The schema as SDL, committed as graphql/schema.graphql; `python -m hubspoke_graphql.sdl` rewrites it."""

from __future__ import annotations

import sys
from pathlib import Path

from hubspoke_graphql.schema import build_schema

SDL_PATH = Path(__file__).resolve().parent.parent / "schema.graphql"
"""graphql/schema.graphql in the source tree (the package lives in graphql/hubspoke_graphql)."""


def export_sdl() -> str:
    """The SDL of the schema generated from the packaged contracts."""
    return build_schema().as_str() + "\n"


def write_sdl(path: Path = SDL_PATH) -> Path:
    """Write the SDL to `path` and return it."""
    path.write_text(export_sdl())
    return path


if __name__ == "__main__":
    print(write_sdl(Path(sys.argv[1]) if len(sys.argv) > 1 else SDL_PATH))
