"""Who may read what: API keys, their roles, and masking of personal data per contract.

Roles: `admin` reads everything; `analyst` reads everything but pii; each domain that owns a
contract (sales, support, billing, hub, ...) reads its own contracts fully and the others'
without pii. A masked pii value is null, or a stable keyed hash where the contract says
`mask: hash` (equal values give equal hashes, so counting and joining still work).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubspoke.config import ConfigError
from lake_schema import Catalog, Contract
from lake_schema.contract import Field, Privacy

ADMIN = "admin"
ANALYST = "analyst"
MIN_KEY_LENGTH = 24
"""Shorter keys are refused when the keys file is read: they could be guessed."""
MIN_SECRET_LENGTH = 16
"""Shorter masking secrets are refused likewise."""


def roles(catalog: Catalog) -> list[str]:
    """Every role a key may have: admin, analyst and one per owning domain."""
    return [ADMIN, ANALYST, *sorted({c.owner for c in catalog.extensions()})]


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class ApiKeys:
    """The keys the API accepts, held as digests, and the secret of the masking hash."""

    roles_by_digest: Mapping[str, str]
    mask_secret: bytes
    """Key of the masking hash (at most 64 bytes)."""

    def role_of(self, key: str | None) -> str | None:
        """The role of `key`, or None when it is not a key of this API."""
        if not key or len(key) > 256:
            return None
        return self.roles_by_digest.get(_digest(key))


def load_keys(path: Path, known_roles: Iterable[str]) -> ApiKeys:
    """Read a keys file: `{"keys": {"<key>": "<role>", ...}, "mask_secret": "..."}`."""
    try:
        raw = json.loads(path.read_text())
        keys = raw["keys"]
        secret = raw.get("mask_secret", "")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"HUBSPOKE_API_KEYS_FILE={path}: cannot read it ({exc}); expected JSON like"
            ' {"keys": {"<key>": "analyst"}, "mask_secret": "<random text>"}'
        ) from None
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_LENGTH:
        # A short or missing secret makes masked values a dictionary attack away from the pii.
        raise ConfigError(
            f"HUBSPOKE_API_KEYS_FILE={path}: mask_secret needs at least {MIN_SECRET_LENGTH}"
            " characters of random text (the keys file `hubspoke serve` creates holds one)"
        )
    accepted = set(known_roles)
    digests = {}
    for key, role in keys.items():
        if role not in accepted:
            raise ConfigError(
                f"HUBSPOKE_API_KEYS_FILE={path}: role {role!r} is not one of {sorted(accepted)}"
            )
        if len(key) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"HUBSPOKE_API_KEYS_FILE={path}: a key of role {role!r} has {len(key)} characters;"
                f" keys need at least {MIN_KEY_LENGTH}"
            )
        digests[_digest(key)] = role
    # BLAKE2b takes keys of up to 64 bytes: a secret of any length is hashed down to one.
    return ApiKeys(digests, hashlib.sha256(secret.encode()).digest())


def create_keys_file(path: Path, key_roles: Iterable[str] = (ADMIN, ANALYST)) -> dict[str, str]:
    """Write a new keys file (readable by its owner only) with one random key per role."""
    made = {role: secrets.token_urlsafe(24) for role in key_roles}
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"keys": {key: role for role, key in made.items()}, "mask_secret": secrets.token_hex(16)}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(body, out, indent=2)
    return made


def key_of_role(path: Path, role: str) -> str:
    """A key of `role` from a keys file (for clients such as the benchmarks and tests)."""
    keys = json.loads(path.read_text())["keys"]
    return next(key for key, r in keys.items() if r == role)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The key sent as `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    auth = headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


@dataclass
class Access:
    """What one role may read, with the masks it needs precomputed per contract."""

    role: str
    mask_secret: bytes = field(repr=False)
    introspection: bool = True
    _hidden: dict[str, dict[str, str]] = field(default_factory=dict)
    _keyed: Any = field(init=False, repr=False, compare=False)
    """BLAKE2b keyed with the secret, copied per value: keying each value's hash compresses a
    block of its own, a third of the cost (100 values: 74 -> 48 us)."""

    def __post_init__(self) -> None:
        self._keyed = hashlib.blake2b(key=self.mask_secret, digest_size=16)

    def sees(self, contract: Contract, f: Field) -> bool:
        """Whether this role reads the field's values as they are."""
        return f.privacy != Privacy.PII or self.role in (ADMIN, contract.owner)

    def hidden(self, contract: Contract) -> dict[str, str]:
        """Field name -> mask (`null` or `hash`) of the fields this role may not read."""
        found = self._hidden.get(contract.name)
        if found is None:
            found = self._hidden[contract.name] = {
                f.name: f.mask for f in contract.fields if not self.sees(contract, f)
            }
        return found

    def mask(self, mode: str, value: Any) -> Any:
        """The masked form of a pii value."""
        if value is None or mode == "null":
            return None
        return _keyed_hash(self._keyed, value)

    def mask_all(self, mode: str, values: Iterable[Any]) -> list[Any]:
        """The masked form of each of `values` (a column of a page)."""
        if mode == "null":
            return [None for _ in values]
        keyed = self._keyed
        return [None if v is None else _keyed_hash(keyed, v) for v in values]


def _keyed_hash(keyed: Any, value: Any) -> str:
    # Keyed BLAKE2b is a MAC in C: a third of HMAC-SHA256's cost through the hmac module,
    # which a page with two hashed columns paid 200 times.
    digest = keyed.copy()
    digest.update(str(value).encode())
    return f"hash:{digest.hexdigest()}"
