"""`import graphql` is graphql-core from everywhere: the top-level graphql/ folder never shadows it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = "import graphql; print(graphql.__file__); print(graphql.version_info)"


def test_graphql_folder_is_not_a_package() -> None:
    assert (ROOT / "graphql" / "hubspoke_graphql" / "__init__.py").is_file()
    assert not (ROOT / "graphql" / "__init__.py").exists()


@pytest.mark.parametrize(
    ("args", "extra_path"),
    [
        (["-c", PROBE], None),  # sys.path[0] is '' = the root, as for `python -m` from there
        (["-c", f"import sys; sys.path.insert(0, {str(ROOT)!r}); {PROBE}"], None),
        (["-c", PROBE], str(ROOT)),  # PYTHONPATH pointing at the root (dagster dev, IDEs)
    ],
)
def test_import_graphql_resolves_to_graphql_core(args: list[str], extra_path: str | None) -> None:
    env = dict(os.environ)
    if extra_path:
        env["PYTHONPATH"] = extra_path
    done = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    where, version = done.stdout.splitlines()
    assert "site-packages" in where, where
    assert not where.startswith(str(ROOT / "graphql") + os.sep)
    assert version.startswith("3.")  # graphql-core's version_info, which a namespace lacks


def test_python_m_from_the_root_writes_the_sdl(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    subprocess.run(
        [sys.executable, "-m", "hubspoke_graphql.sdl", str(out)],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    assert out.read_text() == (ROOT / "graphql" / "schema.graphql").read_text()
