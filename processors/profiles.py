"""How updates and merges change a profile (``schemas.profile``). Pure, on JSON-able dicts
(they live in the profiles table and on the compacted profiles topic as they are).

- ``cv_*`` properties are last-write-wins by **event** time (ties: the later update wins), so
  a late event cannot overwrite a newer value.
- identifiers (ids, emails, cookies) accumulate; first/last seen are event times; actions and
  visits are counts; ``last_seen`` (browser, device, location) is the latest request's by event
  time, kept whole (never a browser of one request with the city of another).
- ``fold`` adds a merged profile into its survivor with the same rules; the survivor lists
  what was merged into it, directly or through the profiles it merged (a fold of one of them
  arriving late is then a replay), the merged one points at the survivor (``merged_into``).
- A profile is bounded (``bounded``), because one person's data must not grow forever nor
  outgrow a Kafka message: the newest ``MAX_IDENTIFIERS`` ids, emails and cookies each, the
  ``MAX_PROPERTIES`` most recently set properties, the last ``MAX_MERGED_FROM`` merges, and at
  most ``MAX_PROFILE_BYTES`` as JSON (the largest property values go first). What is stored
  is what is published: the table and its changelog never disagree.
- Replays change nothing. A worker that crashes re-reads updates it had already applied (its
  table's changelog can be ahead of its committed offset). Each update names its origin, the
  raw partition and offset of the envelope its requests came in, and the path it came by
  (directly, or forwarded by merged profiles); along one path a partition's updates arrive in
  offset order, so a watermark per (partition, path) recognises a replay. A fold is
  recognised by its source, and hands the source's watermarks on, so an update the fold
  already counted and a crashed worker forwards again is recognised too.
"""

from __future__ import annotations

from typing import Any

from schemas.jsonline import to_json
from schemas.profile import Profile, ProfileUpdate, new_profile, shown

__all__ = ["apply_update", "bounded", "fold", "new_profile", "shown"]

MAX_IDENTIFIERS = 100
MAX_PROPERTIES = 1000
MAX_MERGED_FROM = 1000
MAX_PROFILE_BYTES = 1024 * 1024


def bounded(profile: Profile) -> tuple[Profile, bool]:
    """``profile`` within the bounds, and whether anything had to go."""
    trimmed = False
    out = profile
    for kind, limit in (("ids", MAX_IDENTIFIERS), ("emails", MAX_IDENTIFIERS),
                        ("cookies", MAX_IDENTIFIERS), ("merged_from", MAX_MERGED_FROM)):
        if len(out[kind]) > limit:
            out, trimmed = {**out, kind: out[kind][-limit:]}, True
    properties = out["properties"]
    if len(properties) > MAX_PROPERTIES:
        newest = sorted(properties.items(), key=lambda item: item[1][1])[-MAX_PROPERTIES:]
        out, trimmed = {**out, "properties": dict(newest)}, True
    size = len(to_json(out))
    if size > MAX_PROFILE_BYTES:
        properties = dict(out["properties"])
        for name, (value, _) in sorted(properties.items(),
                                       key=lambda item: -len(to_json(item[1][0]))):
            size -= len(to_json(value))
            del properties[name]
            if size <= MAX_PROFILE_BYTES:
                break
        out, trimmed = {**out, "properties": properties}, True
    return out, trimmed


def _union(values: list[str], more: list[str]) -> list[str]:
    added = [v for v in more if v and v not in values]
    return [*values, *dict.fromkeys(added)] if added else values


def apply_update(profile: Profile, update: ProfileUpdate) -> Profile | None:
    """``profile`` after ``update``; None when this update was applied before (a replay)."""
    applied = profile.get("applied") or {}
    if update.origin is not None:
        path = f"{update.origin[0]}/{update.via}"
        if update.origin[1] <= applied.get(path, -1):
            return None
        applied = {**applied, path: update.origin[1]}
    properties = profile["properties"]
    if update.properties:
        properties = dict(properties)
        for name, (value, at) in update.properties.items():
            current = properties.get(name)
            if current is None or at >= current[1]:
                properties[name] = [value, at]
    first, last = profile["first_seen_ms"], profile["last_seen_ms"]
    seen = _latest(profile.get("last_seen"), update.seen_ms, update.seen)
    if update.first_ms is not None:
        first = update.first_ms if first is None else min(first, update.first_ms)
        last = update.last_ms if last is None else max(last, update.last_ms)
    changed = {
        **profile,
        "ids": _union(profile["ids"], update.ids),
        "emails": _union(profile["emails"], update.emails),
        "cookies": _union(profile["cookies"], update.cookies),
        "properties": properties,
        "first_seen_ms": first,
        "last_seen_ms": last,
        "actions": profile["actions"] + update.actions,
        "visits": profile["visits"] + update.visits,
        "applied": applied,
    }
    if seen is not None:
        changed["last_seen"] = seen
    return changed


def _latest(current: Any, at_ms: int | None, seen: dict[str, Any] | None) -> Any:
    """The ``last_seen`` of the two that is newer by event time (ties: the later); None when
    nothing changes."""
    if not seen or at_ms is None:
        return None
    if isinstance(current, dict) and current.get("event_ms", -1) > at_ms:
        return None
    return {"event_ms": at_ms, **seen}


def fold(into: Profile, source: Profile, via: str = "") -> Profile | None:
    """``into`` after ``source`` was merged into it (forwarded by the merged profiles
    ``via``); None if it was already, directly or through a profile it merged (a replay)."""
    if source["profile"] in into["merged_from"]:
        return None
    properties = dict(into["properties"])
    for name, (value, at) in source["properties"].items():
        current = properties.get(name)
        if current is None or at > current[1]:
            properties[name] = [value, at]
    seen = [t for t in (into["first_seen_ms"], source["first_seen_ms"]) if t is not None]
    last = [t for t in (into["last_seen_ms"], source["last_seen_ms"]) if t is not None]
    merged = {**into, "properties": properties,
              "first_seen_ms": min(seen) if seen else None,
              "last_seen_ms": max(last) if last else None,
              "actions": into["actions"] + source["actions"],
              "visits": into["visits"] + source["visits"],
              "merged_from": _union(into["merged_from"],
                                    [*source["merged_from"], source["profile"]])}
    source_seen = source.get("last_seen")
    if isinstance(source_seen, dict) and _latest(
            into.get("last_seen"), source_seen.get("event_ms"), source_seen) is not None:
        merged["last_seen"] = source_seen
    for kind in ("ids", "emails", "cookies"):
        merged[kind] = _union(merged[kind], source[kind])
    # What the source applied is in the fold; replayed at the source after the merge, it
    # comes here forwarded (its path extended by the source and by whatever forwarded the
    # fold) and must be seen as applied.
    applied = dict(into.get("applied") or {})
    for path, offset in (source.get("applied") or {}).items():
        forwarded = f"{path}>{source['profile']}{via}"
        applied[forwarded] = max(offset, applied.get(forwarded, -1))
    merged["applied"] = applied
    return merged
