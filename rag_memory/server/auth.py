"""API keys: each maps to one user id; compared in constant time, never logged.

Keys come from ``--api-key KEY=USER`` flags and from the keys file in the home
(``<home>/server-keys.toml``)::

    [keys]
    "Yq3k...a long random key..." = "alice"
    "b7Rt...another key..." = "bob"

Only a hash of each key is kept in memory once loaded.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rag_memory.errors import ConfigError
from rag_memory.home import write_private

KEYS_FILE = "server-keys.toml"
MIN_KEY_LENGTH = 16
HOW_TO_MAKE_ONE = (
    "make one with `ragmem serve --new-key USER` (it is added to the keys file), or pass"
    " --api-key KEY=USER with a KEY of at least 16 random characters"
)


def keys_file(home: Path) -> Path:
    """Where the server's keys live: a TOML file in the ragmem home."""
    return Path(home) / KEYS_FILE


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


@dataclass(frozen=True)
class ApiKeys:
    """The keys a server accepts, as (sha256 of key, user id) pairs."""

    entries: tuple[tuple[bytes, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def users(self) -> list[str]:
        return sorted({user for _, user in self.entries})

    def user_for(self, presented: str | None) -> str | None:
        """The user a presented key belongs to, or None. Every stored key is compared, in
        constant time, so the time taken says nothing about which key was close."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for stored, user in self.entries:
            if hmac.compare_digest(stored, digest):
                found = user
        return found

    def merged(self, other: ApiKeys) -> ApiKeys:
        return ApiKeys(self.entries + other.entries)

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]], *, origin: str) -> ApiKeys:
        entries: list[tuple[bytes, str]] = []
        seen: dict[bytes, str] = {}
        for key, user in pairs:
            if len(key) < MIN_KEY_LENGTH:
                # Never echo the key itself: only its owner and length.
                raise ConfigError(
                    f"the API key for user {user!r} in {origin} is {len(key)} characters long; keys must have at"
                    f" least {MIN_KEY_LENGTH}: {HOW_TO_MAKE_ONE}"
                )
            if not user.strip():
                raise ConfigError(f"an API key in {origin} has an empty user id; write KEY=USER")
            digest = _digest(key)
            if digest in seen and seen[digest] != user:
                raise ConfigError(
                    f"one API key in {origin} is given to two users ({seen[digest]!r} and {user!r}); a key"
                    " belongs to one user"
                )
            seen[digest] = user
            entries.append((digest, user))
        return cls(tuple(entries))

    @classmethod
    def from_flags(cls, specs: Iterable[str]) -> ApiKeys:
        """Keys from ``KEY=USER`` strings (the ``--api-key`` flag)."""
        pairs = []
        for spec in specs:
            key, sep, user = spec.partition("=")
            if not sep:
                raise ConfigError(
                    f"--api-key takes KEY=USER (the user id the key acts as), got a value without '='"
                    f" ({len(spec)} characters)"
                )
            pairs.append((key.strip(), user.strip()))
        return cls.from_pairs(pairs, origin="--api-key")

    @classmethod
    def from_file(cls, path: Path) -> ApiKeys:
        """Keys from the keys file; no file means no keys."""
        if not path.is_file():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"cannot read the API keys file {path}: {exc}. It must be TOML with a [keys] table of"
                ' "KEY" = "USER" lines'
            ) from exc
        table = data.get("keys", {})
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f'{path}: [keys] must map each key to a user id, as "KEY" = "USER"')
        return cls.from_pairs(table.items(), origin=str(path))


def new_key(path: Path, user: str) -> str:
    """Make a random key for ``user``, add it to the keys file (written private), return it."""
    if not user or not user.strip():
        raise ConfigError(f"the user id for a new key must not be empty, got {user!r}")
    ApiKeys.from_file(path)  # refuse to rewrite a file that does not parse
    existing = tomllib.loads(path.read_text(encoding="utf-8")).get("keys", {}) if path.is_file() else {}
    key = secrets.token_urlsafe(32)
    lines = ["# API keys of `ragmem serve`: each key acts as one user. Keep this file private.", "[keys]"]
    lines += [f"{json.dumps(k)} = {json.dumps(u)}" for k, u in {**existing, key: user}.items()]
    write_private(path, "\n".join(lines) + "\n")
    return key
