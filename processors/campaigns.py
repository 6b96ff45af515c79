"""Campaign attribution of an action (README, "Campaigns"). Pure.

``ce_campaign_*`` are action properties with meaning. An action that carries none of them
gets them from two places, tag by tag, the first that has a value winning:

1. the request's own ``utm_*`` (or ``woo_*``) parameters, as server-side SDKs send them: they
   describe the request they travel on, so they fill any action;
2. the ``utm_*`` (or ``woo_*``) query parameters of its ``url`` / ``uri`` property, as a
   browser's landing page carries them: a pageview's only.

Explicit values always win, so nothing is read from either when any is present.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from schemas.query import parse_query

CAMPAIGN_TAGS = {
    "campaign_name": "campaign",
    "campaign_source": "source",
    "campaign_medium": "medium",
    "campaign_term": "term",
    "campaign_content": "content",
    "campaign_id": "id",
}
PAGEVIEW = "pv"
NOTHING: Mapping[str, str] = {}


def parse_campaign(event: str, properties: Mapping[str, Any],
                   request: Mapping[str, Any] = NOTHING) -> Mapping[str, str]:
    """The campaign properties to add to an action (empty when there is nothing to add), from
    ``request`` (the request's parameters that are neither built-ins nor prefixed ones) first,
    then from the page URL among ``properties``. Read it, do not change it: answers are shared
    between requests of the same page URL."""
    if any(properties.get(name) for name in CAMPAIGN_TAGS):
        return NOTHING
    own = _tags_in(request) if request else NOTHING
    url = (properties.get("url") or properties.get("uri")) if event == PAGEVIEW else None
    from_url = _tags_of(str(url)) if url else NOTHING
    if not own or not from_url:
        return own or from_url
    return {name: own.get(name) or from_url[name] for name in CAMPAIGN_TAGS
            if name in own or name in from_url}


def _tags_in(request: Mapping[str, Any]) -> Mapping[str, str]:
    tags: dict[str, str] = {}
    for key, value in request.items():
        lowered = key.lower()
        if lowered[:4] in ("utm_", "woo_") and isinstance(value, str | int | float):
            tags.setdefault(lowered, str(value))
    return _named(tags) if tags else NOTHING


@functools.lru_cache(maxsize=4096)  # page URLs repeat: a hit is a dict lookup
def _tags_of(url: str) -> Mapping[str, str]:
    lowered = url.lower()
    if "utm_" not in lowered and "woo_" not in lowered and "%" not in url:
        return NOTHING  # no tag can be in it
    try:
        query = urlsplit(url).query
    except ValueError:  # e.g. an unbalanced IPv6 bracket: no campaign, not an error
        return NOTHING
    if not query:
        return NOTHING
    tags: dict[str, str] = {}
    for key, value in parse_query(query):
        tags.setdefault(key.lower(), value)
    return _named(tags)


def _named(tags: Mapping[str, str]) -> Mapping[str, str]:
    """``utm_campaign``… (``utm_`` before ``woo_``) as the action's ``campaign_name``…"""
    found = {}
    for name, tag in CAMPAIGN_TAGS.items():
        value = tags.get(f"utm_{tag}") or tags.get(f"woo_{tag}")
        if value:
            found[name] = value
    return found
