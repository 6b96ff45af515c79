"""What a profile knows, and how updates and merges change it. Pure, on JSON-able dicts
(they live in a faust table and on the compacted profiles topic as they are).

- ``cv_*`` properties are last-write-wins by **event** time (ties: the later update wins), so
  a late event cannot overwrite a newer value.
- identifiers (ids, emails, cookies) accumulate; first/last seen are event times; actions and
  visits are counts.
- ``fold`` adds a merged profile into its survivor with the same rules; the survivor lists
  what was merged into it, the merged one points at the survivor (``merged_into``).
- Replays change nothing. A worker that crashes re-reads updates it had already applied (its
  table's changelog can be ahead of its committed offset). Each update names its origin, the
  raw partition and offset of the request, and the path it came by (directly, or forwarded by
  a merged profile); along one path a partition's updates arrive in offset order, so a
  watermark per (partition, path) recognises a replay. A fold is recognised by its source, and
  hands the source's watermarks on, so an update the fold already counted and a crashed worker
  forwards again is recognised too.
"""

from __future__ import annotations

from typing import Any

Profile = dict[str, Any]


def new_profile(project: str, profile_id: str) -> Profile:
    return {"project": project, "profile": profile_id, "ids": [], "emails": [], "cookies": [],
            "properties": {}, "first_seen_ms": None, "last_seen_ms": None, "actions": 0,
            "visits": 0, "merged_from": [], "merged_into": None, "applied": {}}


def _add(values: list[str], value: str | None) -> list[str]:
    return values if not value or value in values else [*values, value]


def apply_update(profile: Profile, update: dict[str, Any]) -> Profile | None:
    """One processed request: ``event_ms``, identifiers, ``properties``, counts, and its
    ``origin`` ([raw partition, offset]) and ``via`` (the merged profile that forwarded it, or
    absent); None when this update was applied before (a replay)."""
    applied = dict(profile.get("applied") or {})
    origin = update.get("origin")
    if origin is not None:
        path = f"{origin[0]}/{update.get('via') or ''}"
        if origin[1] <= applied.get(path, -1):
            return None
        applied[path] = origin[1]
    at = update["event_ms"]
    properties = dict(profile["properties"])
    for name, value in update.get("properties", {}).items():
        current = properties.get(name)
        if current is None or at >= current[1]:
            properties[name] = [value, at]
    first, last = profile["first_seen_ms"], profile["last_seen_ms"]
    return {
        **profile,
        "ids": _add(profile["ids"], update.get("id")),
        "emails": _add(profile["emails"], update.get("email")),
        "cookies": _add(profile["cookies"], update.get("cookie")),
        "properties": properties,
        "first_seen_ms": at if first is None else min(first, at),
        "last_seen_ms": at if last is None else max(last, at),
        "actions": profile["actions"] + update.get("actions", 0),
        "visits": profile["visits"] + update.get("visits", 0),
        "applied": applied,
    }


def fold(into: Profile, source: Profile) -> Profile | None:
    """``into`` after ``source`` was merged into it; None if it was already (a replay)."""
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
              "merged_from": _add(into["merged_from"], source["profile"])}
    for kind in ("ids", "emails", "cookies"):
        for value in source[kind]:
            merged[kind] = _add(merged[kind], value)
    # What the source applied is in the fold; replayed at the source after the merge, it
    # comes here forwarded (its path extended by the source) and must be seen as applied.
    applied = dict(into.get("applied") or {})
    for path, offset in (source.get("applied") or {}).items():
        forwarded = f"{path}>{source['profile']}"
        applied[forwarded] = max(offset, applied.get(forwarded, -1))
    merged["applied"] = applied
    return merged


def shown(profile: Profile) -> Profile:
    """The profile as `trackpipe profile` prints it: property values without their times,
    and without the replay watermarks."""
    out = {k: v for k, v in profile.items() if k != "applied"}
    out["properties"] = {k: v for k, (v, _) in profile["properties"].items()}
    return out
