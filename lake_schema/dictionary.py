"""The data dictionary: a Markdown page generated from the contracts, so it cannot go stale.

Run `python -m lake_schema.dictionary` to rewrite docs/data_dictionary.md, or with `--check` to
exit 1 when the committed page differs from the contracts (CI and a test do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lake_schema.catalog import Catalog, load_catalog
from lake_schema.contract import Contract, Field, format_duration

DICTIONARY = Path(__file__).resolve().parent.parent / "docs" / "data_dictionary.md"
_KINDS = {
    "identity": "Identity tables (the hub's single source of truth per entity)",
    "extension": "Domain extension tables (nightly copies, owned by their domain)",
    "log": "Logs and holding tables of the hub",
    "event": "Bus events (not stored as tables)",
}


def render(catalog: Catalog) -> str:
    """The whole dictionary as Markdown."""
    contracts = sorted(catalog, key=lambda c: (list(_KINDS).index(c.kind), c.table_name))
    lines = [
        "# Data dictionary",
        "",
        "Generated from `lake_schema/contracts/*.yaml` by `python -m lake_schema.dictionary`;"
        " do not edit by hand.",
        "Privacy classes: `pii` (masked for roles that may not see it, removed by erasure),"
        " `internal`, `public`.",
        "",
        "| table | kind | owner | steward | freshness | payload retention |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for c in contracts:
        lines.append(
            f"| [{c.table_name}](#{c.table_name}) | {c.kind} | {c.owner} | {c.steward or '-'}"
            f" | {_freshness(c)} | {_expiry(c)} |"
        )
    for kind, title in _KINDS.items():
        group = [c for c in contracts if c.kind == kind]
        if not group:
            continue
        lines += ["", f"## {title}"]
        for c in group:
            lines += _table_section(c)
    return "\n".join(lines) + "\n"


def _table_section(c: Contract) -> list[str]:
    key = ", ".join(c.key_fields)
    facts = [
        f"**{c.name}** v{c.version}",
        f"owner `{c.owner}`",
        f"steward {c.steward}" if c.steward else None,
        f"key `{key}`",
        f"freshness {_freshness(c)}" if c.freshness else None,
        f"history kept {format_duration(c.retention.history)}" if c.kind != "event" else None,
        f"payload retention: {_expiry(c)}" if c.retention.expire else None,
        f"files clustered by `{', '.join(c.z_order)}`" if c.z_order else None,
        ("change data feed " + ("on" if c.change_feed else "off")) if c.kind != "event" else None,
    ]
    return [
        "",
        f"### {c.table_name}",
        "",
        " ".join(c.description.split()),
        "",
        " · ".join(f for f in facts if f),
        "",
        "| field | type | required | privacy | description |",
        "| --- | --- | --- | --- | --- |",
        *(_field_row(f) for f in c.fields),
    ]


def _field_row(f: Field) -> str:
    notes = [f.description.replace("|", "\\|")]
    if f.references:
        notes.append(f"References `{f.references}`.")
    if f.allowed:
        notes.append(f"One of {', '.join(f'`{a}`' for a in f.allowed)}.")
    if f.minimum is not None:
        notes.append(f"At least {f.minimum:g}.")
    if f.max_length is not None:
        notes.append(f"At most {f.max_length} characters.")
    required = "no" if f.nullable else "yes"
    return f"| `{f.name}` | {f.type} | {required} | {f.privacy.value} | {' '.join(notes)} |"


def _freshness(c: Contract) -> str:
    return format_duration(c.freshness.max_age) if c.freshness else "-"


def _expiry(c: Contract) -> str:
    e = c.retention.expire
    if e is None:
        return "-"
    return f"{', '.join(e.set)} after {format_duration(e.after)} (by {e.by})"


def main(argv: list[str] | None = None) -> int:
    """Write the dictionary, or with --check report whether the committed one is current."""
    parser = argparse.ArgumentParser(prog="python -m lake_schema.dictionary", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    parser.add_argument("--path", type=Path, default=DICTIONARY, help="where the page lives")
    args = parser.parse_args(argv)
    text = render(load_catalog())
    if args.check:
        current = args.path.read_text() if args.path.exists() else ""
        if current != text:
            print(f"{args.path} is out of date: run python -m lake_schema.dictionary")
            return 1
        print(f"{args.path} matches the contracts")
        return 0
    args.path.write_text(text)
    print(f"wrote {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
