"""The README's quick start is what CI runs, and the layout keeps graphql-core importable."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```(?:bash)?\n(.*?)```", readme, re.S)
    assert block, "README has no Quick start code block"
    return [line.strip() for line in block[1].splitlines() if line.strip()]


def test_quick_start_is_two_commands_and_ci_runs_the_second() -> None:
    demo, test = quick_start_commands()
    assert demo == "make demo" and test == "make test"
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: \$\(STAMP\)\n\t\$\(BIN\)/hubspoke demo", makefile, re.M)
    assert re.search(r"^test: \$\(STAMP\)\n\t\$\(BIN\)/pytest$", makefile, re.M)
