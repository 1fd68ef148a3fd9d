"""GraphiQL without a CDN: strawberry's page loads React and GraphiQL from unpkg, which private
networks often cannot reach. The same files (same versions, so the page's integrity hashes still
match) are fetched once from the npm registry with `npm pack` and served by the API itself.

`python -m hubspoke_graphql.graphiql` fetches them into `HUBSPOKE_GRAPHIQL_ASSETS`.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from strawberry.http.ides import get_graphql_ide_html

from hubspoke.config import Settings

ROUTE = "/graphiql-assets"
"""Where the API serves the files."""
_UNPKG = re.compile(r"https://unpkg\.com/((?:@[\w.-]+/)?[\w.-]+)@([\w.-]+)/([\w./-]+)")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Asset:
    """One file of one npm package version that the GraphiQL page loads."""

    package: str
    version: str
    path: str

    @property
    def local(self) -> str:
        """Its path under the assets folder and the route."""
        return f"{self.package}@{self.version}/{self.path}"


def page_assets(html: str | None = None) -> list[Asset]:
    """Every file strawberry's GraphiQL page loads from unpkg."""
    page = html if html is not None else get_graphql_ide_html(graphql_ide="graphiql")
    return [Asset(*m) for m in _UNPKG.findall(page)]


def missing(folder: Path) -> list[Asset]:
    """The page's files not yet in `folder`."""
    return [a for a in page_assets() if not (folder / a.local).is_file()]


def fetch(folder: Path) -> int:
    """Download the missing files with `npm pack` (one tarball per package); returns how many."""
    wanted = missing(folder)
    if not wanted:
        return 0
    if shutil.which("npm") is None:
        raise RuntimeError(
            "GraphiQL's files need npm (Node.js) to fetch them from the npm registry"
        )
    with tempfile.TemporaryDirectory() as tmp:
        for package, version in sorted({(a.package, a.version) for a in wanted}):
            done = subprocess.run(
                ["npm", "pack", f"{package}@{version}", "--pack-destination", tmp, "--silent"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"npm pack {package}@{version} failed: {done.stderr.strip()}")
            tarball = Path(tmp) / done.stdout.strip().splitlines()[-1]
            with tarfile.open(tarball) as archive:
                for asset in (a for a in wanted if a.package == package):
                    member = archive.extractfile(f"package/{asset.path}")
                    if member is None:
                        raise RuntimeError(f"{package}@{version} has no {asset.path}")
                    target = folder / asset.local
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(member.read())
    return len(wanted)


def offline_page(folder: Path) -> str:
    """Strawberry's GraphiQL page loading its files from this API, where they are all present."""
    html = get_graphql_ide_html(graphql_ide="graphiql")
    if missing(folder):
        log.warning(
            "GraphiQL's files are not in %s; the page loads them from unpkg."
            " Run `python -m hubspoke_graphql.graphiql` to serve them locally.",
            folder,
        )
        return html
    return _UNPKG.sub(lambda m: f"{ROUTE}/{m[1]}@{m[2]}/{m[3]}", html)


if __name__ == "__main__":
    target = Settings.from_env().graphiql_assets
    print(f"fetched {fetch(target)} GraphiQL files into {target}")
