"""Campaign attribution of a pageview (SPEC §5). Pure.

``ce_campaign_*`` are action properties with meaning. A pageview that carries none of them
gets them from the ``utm_*`` (or ``woo_*``) query parameters of its ``url`` / ``uri``
property; explicit values always win, so nothing is read from the URL when any is present.
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


def parse_campaign(event: str, properties: Mapping[str, Any]) -> Mapping[str, str]:
    """The campaign properties to add to an action (empty when there is nothing to add).
    Read it, do not change it: answers are shared between requests of the same page URL."""
    if event != PAGEVIEW or any(properties.get(name) for name in CAMPAIGN_TAGS):
        return NOTHING
    url = properties.get("url") or properties.get("uri")
    if not url:
        return NOTHING
    return _tags_of(str(url))


NOTHING: Mapping[str, str] = {}


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
    found = {}
    for name, tag in CAMPAIGN_TAGS.items():
        value = tags.get(f"utm_{tag}") or tags.get(f"woo_{tag}")
        if value:
            found[name] = value
    return found
