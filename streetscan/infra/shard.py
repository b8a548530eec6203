"""Splitting one streams.yaml over N daemons: each takes the cameras rendezvous hashing gives it.

Every node reads the same file. Camera c belongs to the shard k (0 <= k < N) with the highest
hash of (k, c) (highest-random-weight hashing), so growing or shrinking the fleet from N to N±1
shards moves only the cameras whose top shard appeared or went (about 1/N of them), and every
node works out the same owner without talking to the others.

On Kubernetes the shard comes from a StatefulSet pod's ordinal: STREETSCAN_SHARD_COUNT=N and a
host name ending in -<k> (streetscan-2). Or set STREETSCAN_SHARD=k/N, or pass --shard k/N.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass


class ShardError(ValueError):
    pass


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ShardError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str) -> Shard:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m:
            raise ShardError(f"shard {text!r}: expected INDEX/COUNT, e.g. 0/3 (indexes count from 0)")
        return cls(int(m.group(1)), int(m.group(2)))

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> Shard | None:
        """STREETSCAN_SHARD=k/N, else STREETSCAN_SHARD_COUNT=N with the StatefulSet ordinal at the
        end of the host name; None when neither is set (one daemon for the whole file)."""
        env = os.environ if env is None else env
        if env.get("STREETSCAN_SHARD"):
            return cls.parse(env["STREETSCAN_SHARD"])
        count = env.get("STREETSCAN_SHARD_COUNT")
        if not count:
            return None
        host = env.get("HOSTNAME") or os.uname().nodename
        m = re.search(r"-(\d+)$", host)
        if not m or not count.isdigit():
            raise ShardError(
                f"STREETSCAN_SHARD_COUNT={count!r} needs a host name ending in -<ordinal> "
                f"(a StatefulSet pod), got {host!r}; or set STREETSCAN_SHARD=k/N"
            )
        return cls(int(m.group(1)), int(count))

    def owner(self, camera_id: str) -> int:
        return owner(camera_id, self.count)

    def owns(self, camera_id: str) -> bool:
        return owner(camera_id, self.count) == self.index


def owner(camera_id: str, count: int) -> int:
    """The shard (0..count-1) that analyses this camera."""

    def weight(k: int) -> int:
        return int.from_bytes(hashlib.blake2b(f"{k}\x00{camera_id}".encode(), digest_size=8).digest(), "big")

    return max(range(count), key=weight)
