"""The contract model: a table's (or event's) name, owner, version and typed, classified fields."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal

import pyarrow as pa
from pydantic import BaseModel, BeforeValidator, ConfigDict, field_validator, model_validator

_DECIMAL = re.compile(r"^decimal\((\d+),\s*(\d+)\)$")
_SCALARS: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.date32(),
    "list<string>": pa.list_(pa.string()),
}
ACCEPTED_TYPES = (
    "string, int64, float64, boolean, timestamp, date, decimal(P,S), object, list<string>"
)
_PYTHON_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "int64": int,
    "float64": (int, float),
    "boolean": bool,
    "timestamp": datetime,
    "date": date,
    "list<string>": list,
    "object": dict,
}
"""What a valid value of each type is in Python (decimal types take Decimal)."""


class ContractError(ValueError):
    """A contract file, or a value checked against a contract, is not valid."""


class Privacy(StrEnum):
    """How sensitive a field is; decides masking, audit and erasure."""

    PUBLIC = "public"
    INTERNAL = "internal"
    PII = "pii"


_DURATION = re.compile(r"^(\d+)\s*(m|h|d)$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """A contract duration such as `15m`, `26h` or `90d` as a timedelta."""
    match = _DURATION.match(str(text).strip())
    if match is None:
        raise ValueError(
            f"duration {text!r} must be a whole number followed by m, h or d (15m, 26h, 90d)"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def format_duration(span: timedelta) -> str:
    """A duration in the largest whole unit: `26 hours`, `90 days`, `5 minutes`."""
    seconds = int(span.total_seconds())
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


Duration = Annotated[
    timedelta,
    BeforeValidator(lambda v: v if isinstance(v, timedelta) else parse_duration(str(v))),
]
"""A contract duration field: `15m`, `26h`, `90d` in YAML, a timedelta in Python."""


class Expiry(BaseModel):
    """Fields whose values a table keeps only for a while (payloads), and what replaces them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    after: Duration
    by: str
    """The timestamp field a row's age is measured from."""
    set: dict[str, str | None]
    """Field -> value it holds once expired (null only for nullable fields)."""


class Retention(BaseModel):
    """How long a table keeps old file versions (time travel) and expiring payloads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    history: Duration = timedelta(days=7)
    """Removed files stay this long for time travel and slow readers, then vacuum deletes them."""
    expire: Expiry | None = None


class Freshness(BaseModel):
    """How old a table's content may get before consumers should not trust it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_age: Duration


class Field(BaseModel):
    """One column of a table, or one attribute of an event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str
    nullable: bool
    description: str
    privacy: Privacy
    source: Literal["event"] | None = None
    references: str | None = None
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    max_length: int | None = None
    mask: Literal["null", "hash"] = "null"
    """How the API hides a pii value from roles that may not see it: null, or a stable keyed hash
    (equal values give equal hashes, so counts and joins still work)."""

    @field_validator("name")
    @classmethod
    def _snake_case(cls, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"field name {name!r} must be snake_case ([a-z][a-z0-9_]*)")
        return name

    @field_validator("type")
    @classmethod
    def _known_type(cls, type_: str) -> str:
        if type_ not in _SCALARS and type_ != "object" and not _DECIMAL.match(type_):
            raise ValueError(f"type {type_!r} is not one of: {ACCEPTED_TYPES}")
        return type_

    @property
    def arrow_type(self) -> pa.DataType:
        """The physical Arrow type the lake stores this field as."""
        if m := _DECIMAL.match(self.type):
            return pa.decimal128(int(m[1]), int(m[2]))
        if self.type == "object":
            return pa.string()  # JSON text
        return _SCALARS[self.type]

    def problems(self, value: Any) -> str | None:
        """Why `value` breaks this field's contract, or None when it is fine."""
        if value is None:
            return None if self.nullable else f"{self.name} is required but missing"
        expected = _PYTHON_TYPES.get(self.type, Decimal)
        if isinstance(value, bool) and expected in (int, (int, float), Decimal):
            return f"{self.name} must be {self.type}, got boolean {value!r}"
        if expected is Decimal and isinstance(value, int | float | str):
            try:
                value = Decimal(str(value))
            except InvalidOperation:
                return f"{self.name} must be {self.type}, got {value!r}"
        if not isinstance(value, expected):
            return f"{self.name} must be {self.type}, got {type(value).__name__} {value!r:.60}"
        if isinstance(value, datetime) and value.tzinfo is None:
            return f"{self.name} must carry a UTC offset, got naive {value.isoformat()}"
        if self.allowed is not None and value not in self.allowed:
            return f"{self.name} must be one of {', '.join(self.allowed)}, got {value!r:.60}"
        if self.minimum is not None and value < self.minimum:
            return f"{self.name} must be >= {self.minimum:g}, got {value!r}"
        if self.max_length is not None and len(value) > self.max_length:
            return f"{self.name} must be at most {self.max_length} characters, got {len(value)}"
        if isinstance(expected, type) and expected is Decimal:
            digits = self.arrow_type.precision - self.arrow_type.scale
            if abs(value) >= Decimal(10) ** digits:
                return f"{self.name} does not fit {self.type}: {value}"
        return None


class Erasure(BaseModel):
    """How a right-to-erasure request removes one person from a table (the contract's `erasure:`).

    `match` names the column that identifies the person: their id, a list of ids
    (`remove_from_list`), or, with `mentions`, free text that mentions their id or any of
    their PII values (messages kept verbatim). Rows that match are deleted, unless `redact`
    names the fields to overwrite (field -> replacement, null for null) or `remove_from_list`
    takes the id out of the list and keeps the row.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    match: str
    mentions: bool = False
    redact: dict[str, str | None] | None = None
    remove_from_list: bool = False

    @model_validator(mode="after")
    def _one_way(self) -> Erasure:
        if self.redact is not None and self.remove_from_list:
            raise ValueError("erasure: choose redact or remove_from_list, not both")
        if self.mentions and self.remove_from_list:
            raise ValueError("erasure: mentions matches text, remove_from_list needs a list column")
        return self

    @property
    def action(self) -> str:
        """delete_rows, redact or remove_from_list."""
        if self.redact is not None:
            return "redact"
        return "remove_from_list" if self.remove_from_list else "delete_rows"


class Contract(BaseModel):
    """A named, owned, versioned shape: a lake table, an append-only log, or a bus event."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    kind: Literal["identity", "extension", "log", "event"]
    owner: str
    version: str
    description: str
    primary_key: str | tuple[str, ...]
    fields: tuple[Field, ...]
    entity: str | None = None
    extension_name: str | None = None
    steward: str | None = None
    """Contact of the people who answer questions about the data (an e-mail address)."""
    erasure: Erasure | None = None
    """How a right-to-erasure request removes a person from this table; None: holds none."""
    retention: Retention = Retention()
    freshness: Freshness | None = None
    z_order: tuple[str, ...] = ()
    """Columns maintenance clusters the files by, so point reads skip most files."""
    change_feed: bool = True
    """Whether the Delta table records a change data feed (`delta.enableChangeDataFeed`)."""

    @field_validator("owner")
    @classmethod
    def _owner_is_a_name(cls, owner: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", owner):
            raise ValueError(f"owner {owner!r} must be a domain name in snake_case, like sales")
        return owner

    @field_validator("steward")
    @classmethod
    def _steward_is_an_address(cls, steward: str | None) -> str | None:
        if steward is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[a-z]{2,}", steward):
            raise ValueError(f"steward {steward!r} must be an e-mail address")
        return steward

    @model_validator(mode="after")
    def _consistent(self) -> Contract:
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: duplicate field names in {names}")
        for key in self.key_fields:
            if key not in names:
                raise ValueError(f"{self.name}: primary key {key!r} is not a field")
        if self.kind in ("identity", "extension") and self.entity is None:
            raise ValueError(f"{self.name}: an {self.kind} contract must name its entity")
        if self.kind == "extension" and self.extension_name is None:
            raise ValueError(f"{self.name}: an extension contract must set extension_name")
        if self.erasure is not None:
            self._check_erasure(self.erasure, names)
        if not re.fullmatch(r"\d+\.\d+\.\d+", self.version):
            raise ValueError(f"{self.name}: version {self.version!r} must be MAJOR.MINOR.PATCH")
        for column in self.z_order:
            if column not in names:
                raise ValueError(f"{self.name}: z_order column {column!r} is not a field: {names}")
        if self.retention.expire is not None:
            self._check_expiry(self.retention.expire, names)
        return self

    def _check_erasure(self, erasure: Erasure, names: list[str]) -> None:
        for name in [erasure.match, *(erasure.redact or {})]:
            if name not in names:
                raise ValueError(f"{self.name}: erasure names {name!r}, which is not a field")
        list_column = self.field(erasure.match).type == "list<string>"
        if erasure.remove_from_list != list_column:
            raise ValueError(
                f"{self.name}: erasure match {erasure.match!r} is"
                f" {self.field(erasure.match).type}; remove_from_list is for list<string>"
                " columns and is required on them"
            )
        for name, value in (erasure.redact or {}).items():
            f = self.field(name)
            if name == erasure.match or name in self.key_fields:
                raise ValueError(f"{self.name}: erasure cannot redact the key or match {name!r}")
            if value is None and not f.nullable:
                raise ValueError(f"{self.name}: erasure redacts {name!r} to null; it is required")
            if value is not None and f.type not in ("string", "object"):
                raise ValueError(f"{self.name}: erasure replaces {name!r} ({f.type}) with text")

    def _check_expiry(self, expire: Expiry, names: list[str]) -> None:
        by = {f.name: f for f in self.fields}.get(expire.by)
        if by is None or by.type != "timestamp":
            raise ValueError(
                f"{self.name}: retention.expire.by {expire.by!r} must be a timestamp field"
            )
        if not expire.set:
            raise ValueError(f"{self.name}: retention.expire.set names no field to expire")
        for name, value in expire.set.items():
            if name not in names:
                raise ValueError(f"{self.name}: retention.expire.set: {name!r} is not a field")
            if name in self.key_fields or name == expire.by:
                raise ValueError(
                    f"{self.name}: retention.expire.set: {name!r} is a key or the age field;"
                    " only payload fields expire"
                )
            if problem := self.field(name).problems(value):
                raise ValueError(f"{self.name}: retention.expire.set: {problem}")

    @cached_property
    def table_name(self) -> str:
        """The lake folder and SQL name of this contract: its name in snake_case."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.name).lower()

    @property
    def key_fields(self) -> tuple[str, ...]:
        """Primary key columns, in order."""
        return (self.primary_key,) if isinstance(self.primary_key, str) else self.primary_key

    def field(self, name: str) -> Field:
        """The field called `name`; raises ContractError naming the accepted fields."""
        for f in self.fields:
            if f.name == name:
                return f
        raise ContractError(f"{self.name} has no field {name!r}; fields: {self.field_names}")

    @property
    def field_names(self) -> list[str]:
        """Field names in contract order."""
        return [f.name for f in self.fields]

    def arrow_schema(self) -> pa.Schema:
        """The Arrow schema of the lake table, with descriptions and privacy as field metadata."""
        return pa.schema(
            [
                pa.field(
                    f.name,
                    f.arrow_type,
                    nullable=f.nullable,
                    metadata={"description": f.description, "privacy": f.privacy.value},
                )
                for f in self.fields
            ],
            metadata={"contract": self.name, "contract_version": self.version},
        )

    def row_problems(self, row: dict[str, Any]) -> list[str]:
        """Every way `row` breaks this contract (unknown fields included); empty when valid."""
        unknown = sorted(set(row) - set(self.field_names))
        found = [f"unknown field {name!r}" for name in unknown]
        found += [p for f in self.fields if (p := f.problems(row.get(f.name)))]
        return found

    def to_arrow(self, rows: list[dict[str, Any]]) -> pa.Table:
        """Valid rows as an Arrow table in exactly this contract's physical schema."""
        return pa.Table.from_pylist(rows, schema=self.arrow_schema())


def utc(value: datetime) -> datetime:
    """`value` as an aware UTC datetime; naive values are refused, never guessed."""
    if value.tzinfo is None:
        raise ContractError(f"timestamp {value.isoformat()} has no UTC offset")
    return value.astimezone(UTC)
