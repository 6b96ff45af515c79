"""The profiles stage: profile changes in, profiles out (``schemas.profile``).

It reads envelopes of changes keyed by profile and keeps each profile in the ``profiles``
table, with the rules of ``processors.profiles``: an update is applied, a merge marks the
profile ``merged_into`` its survivor and sends its state there as a ``Fold``, and a profile
that was merged forwards what still reaches it to its survivor (the path it took is part of
the update, so replays stay recognisable). The table's changelog is the public compacted
``profiles`` topic itself: each changed profile is published once per flush, whatever number
of changes it took in since the last one.
"""

from __future__ import annotations

import logging

import msgpack
import msgspec

from processors import profiles
from processors.metrics import WorkerMetrics
from processors.outbound import Outbound
from processors.state import TableState
from schemas.profile import (
    Fold,
    MergeInto,
    Profile,
    ProfileChange,
    ProfileUpdate,
    change_from_obj,
)

log = logging.getLogger(__name__)


class ProfilesStage:
    def __init__(self, table: TableState, outbound: Outbound, metrics: WorkerMetrics,
                 profile_updates: str) -> None:
        self.table = table
        self.outbound = outbound
        self.metrics = metrics
        self.profile_updates = profile_updates

    def handle_change(self, partition: int, item: object) -> None:
        """One decoded item of a profile-updates envelope."""
        self.apply(partition, change_from_obj(item))

    def apply(self, partition: int, change: ProfileChange) -> None:
        key = change.key
        current = self.table.get(key) or profiles.new_profile(change.project, change.profile)
        survivor = current["merged_into"]
        if survivor:
            self._merged(current, survivor, change)
            return
        if isinstance(change, ProfileUpdate):
            changed = profiles.apply_update(current, change)
        elif isinstance(change, Fold):
            changed = profiles.fold(current, change.source, change.via)
        else:  # merged into another profile
            changed = {**current, "merged_into": change.into}
            self._send(Fold(change.project, change.into, current))
        if changed is not None:  # None: applied before a crash, a replay
            changed, trimmed = profiles.bounded(changed)
            self.metrics.profiles_trimmed += trimmed
            self.table.put(key, changed, partition)

    def _merged(self, current: Profile, survivor: str, change: ProfileChange) -> None:
        """A change that reaches a merged profile belongs to its survivor: an update or a
        fold is forwarded (its path extended, so replays stay recognisable), and the merge
        itself, read again, sends the fold again (the survivor takes it once)."""
        here = current["profile"]
        if isinstance(change, MergeInto):
            if change.into == survivor:  # the state it sent when it was merged
                self._send(Fold(change.project, survivor, {**current, "merged_into": None}))
            else:  # another merge of a profile that is gone: its survivor has its state
                log.warning("%s was merged into %s; a merge into %s is not applied",
                            here, survivor, change.into)
            return
        via = f"{change.via}>{here}"
        if f">{survivor}>" in f"{via}>" or (  # merges that form a cycle
                isinstance(change, Fold) and survivor == change.source["profile"]):
            self.metrics.profiles_cycles += 1
            log.error("profile merges form a cycle through %s%s; a change is dropped", here, via)
            return
        if isinstance(change, ProfileUpdate):
            self._send(msgspec.structs.replace(change, profile=survivor, via=via))
        else:
            self._send(Fold(change.project, survivor, change.source, via))

    def _send(self, change: ProfileChange) -> None:
        self.outbound.record(self.profile_updates, change.key, msgpack.packb(change.to_obj()))
