"""How updates and merges change a profile (``schemas.profile``). Pure, on JSON-able dicts
(they live in the profiles table and on the compacted profiles topic as they are).

- ``cv_*`` properties are last-write-wins by **event** time (ties: the later update wins), so
  a late event cannot overwrite a newer value.
- identifiers (ids, emails, cookies) accumulate; first/last seen are event times; actions and
  visits are counts.
- ``fold`` adds a merged profile into its survivor with the same rules; the survivor lists
  what was merged into it, the merged one points at the survivor (``merged_into``).
- Replays change nothing. A worker that crashes re-reads updates it had already applied (its
  table's changelog can be ahead of its committed offset). Each update names its origin, the
  raw partition and offset of the envelope its requests came in, and the path it came by
  (directly, or forwarded by merged profiles); along one path a partition's updates arrive in
  offset order, so a watermark per (partition, path) recognises a replay. A fold is
  recognised by its source, and hands the source's watermarks on, so an update the fold
  already counted and a crashed worker forwards again is recognised too.
"""

from __future__ import annotations

from schemas.profile import Profile, ProfileUpdate, new_profile, shown

__all__ = ["apply_update", "fold", "new_profile", "shown"]


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
    if update.first_ms is not None:
        first = update.first_ms if first is None else min(first, update.first_ms)
        last = update.last_ms if last is None else max(last, update.last_ms)
    return {
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
              "merged_from": _union(into["merged_from"], [source["profile"]])}
    for kind in ("ids", "emails", "cookies"):
        merged[kind] = _union(merged[kind], source[kind])
    # What the source applied is in the fold; replayed at the source after the merge, it
    # comes here forwarded (its path extended by the source) and must be seen as applied.
    applied = dict(into.get("applied") or {})
    for path, offset in (source.get("applied") or {}).items():
        forwarded = f"{path}>{source['profile']}"
        applied[forwarded] = max(offset, applied.get(forwarded, -1))
    merged["applied"] = applied
    return merged
