"""A project's quota state, as the processors publish it to the compacted quota topic.

The processors count a project's actions per calendar month (UTC): each raw partition sends
its count (a ``QuotaCount``, internal, in envelopes keyed by project) to the project's own
partition, which publishes the total with the quota it is measured against. A gateway answers
402 while ``over`` holds for the current month; a state of an earlier month means a new month
has begun, which lifts the 402 at once.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import msgpack


def month_of(ms: int) -> str:
    """The calendar month (UTC) of a unix-ms time, as "YYYY-MM"."""
    return _month_of_day(ms // 86_400_000)


@functools.lru_cache(maxsize=1024)
def _month_of_day(day: int) -> str:  # formatted once per day, not once per record
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y-%m")


@dataclass(frozen=True, slots=True)
class QuotaState:
    project: str
    month: str          # "YYYY-MM", UTC
    count: int
    quota: int | None   # None: no quota

    @property
    def over(self) -> bool:
        return self.quota is not None and self.count >= self.quota

    def over_in(self, month: str) -> bool:
        """Over quota in ``month`` (a state of another month says nothing about it)."""
        return self.month == month and self.over

    def to_bytes(self) -> bytes:
        return msgpack.packb({"v": 1, **asdict(self)})

    @classmethod
    def from_bytes(cls, data: bytes) -> QuotaState:
        obj = msgpack.unpackb(data)
        obj.pop("v", None)
        return cls(**{k: obj[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class QuotaCount:
    """The actions one raw partition counted for a project in a month (only ever grows)."""
    project: str
    month: str
    partition: int
    count: int

    @property
    def key(self) -> bytes:
        return self.project.encode()

    def to_obj(self) -> list[object]:
        return [self.project, self.month, self.partition, self.count]

    @classmethod
    def from_obj(cls, obj: list[object]) -> QuotaCount:
        return cls(*obj)  # type: ignore[arg-type]
