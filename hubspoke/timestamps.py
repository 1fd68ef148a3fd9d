"""Instants as integer microseconds since the Unix epoch (Delta app transactions store integers)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(at: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime."""
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """Inverse of `to_micros`, as an aware UTC datetime."""
    return EPOCH + timedelta(microseconds=micros)
