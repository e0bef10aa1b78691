"""A host's identity: an nkeys server key pair and a friendly name."""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import nkeys

_ADJECTIVES = ["amber", "autumn", "bold", "brave", "bright", "calm", "crimson", "dawn", "dusty", "eager", "fancy",
               "gentle", "golden", "green", "hidden", "icy", "jolly", "lively", "misty", "noble", "odd", "proud",
               "quiet", "rapid", "rustic", "shy", "silent", "silver", "snowy", "solitary", "sparkling", "spring",
               "still", "summer", "swift", "tiny", "twilight", "wandering", "wild"]
_NOUNS = ["brook", "cloud", "dew", "dream", "field", "fire", "flower", "fog", "forest", "frost", "glade", "haze",
          "hill", "lake", "leaf", "meadow", "moon", "morning", "mountain", "night", "pine", "pond", "rain", "resonance",
          "river", "sea", "shadow", "sky", "smoke", "snow", "sound", "star", "sun", "sunset", "surf", "thunder", "tree",
          "violet", "water", "wave", "wind", "wood"]


@dataclass(frozen=True)
class Identity:
    seed: str
    public_key: str

    @property
    def friendly_name(self) -> str:
        h = hashlib.sha256(self.public_key.encode()).digest()
        return f"{_ADJECTIVES[h[0] % len(_ADJECTIVES)]}-{_NOUNS[h[1] % len(_NOUNS)]}-{h[2] * 256 + h[3]:05d}"[:40]

    @classmethod
    def generate(cls) -> Identity:
        seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_SERVER).decode()
        return cls.from_seed(seed)

    @classmethod
    def from_seed(cls, seed: str) -> Identity:
        try:
            kp = nkeys.from_seed(bytearray(seed.strip().encode()))
            public = kp.public_key.decode()
        except Exception as exc:  # nkeys raises its own hierarchy and binascii errors
            raise ValueError(f"invalid host seed: {exc.__class__.__name__}") from None
        if not public.startswith("N"):
            raise ValueError("invalid host seed: not a server (N…) key; generate one with 'trellis host' once")
        return cls(seed=seed.strip(), public_key=public)

    @classmethod
    def load_or_create(cls, path: Path) -> Identity:
        """Keep a host's identity across restarts in a seed file (mode 0600)."""
        if path.exists():
            return cls.from_seed(path.read_text())
        ident = cls.generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(ident.seed + "\n")
        return ident


STATE_ID_FILE = "state-id"


def state_id(state_dir: Path) -> str:
    """The stable id of a state dir (where local data such as SQLite files lives), kept in
    ``STATE_DIR/state-id``: a host restarted on the same state dir (even with a new host id)
    reports the same one, so wadm can tell which host holds a provider's data."""
    path = state_dir / STATE_ID_FILE
    try:
        found = path.read_text().strip()
        if found:
            return found
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    new = uuid.uuid4().hex
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:  # another host on this state dir made it meanwhile
        return path.read_text().strip()
    with os.fdopen(fd, "w") as f:
        f.write(new + "\n")
    return new
