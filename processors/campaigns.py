"""Campaign attribution of a pageview (SPEC §5). Pure.

``ce_campaign_*`` are action properties with meaning. A pageview that carries none of them
gets them from the ``utm_*`` (or ``woo_*``) query parameters of its ``url`` / ``uri``
property; explicit values always win, so nothing is read from the URL when any is present.
"""

from __future__ import annotations

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


def parse_campaign(event: str, properties: Mapping[str, Any]) -> dict[str, str]:
    """The campaign properties to add to an action (empty when there is nothing to add)."""
    if event != PAGEVIEW or any(properties.get(name) for name in CAMPAIGN_TAGS):
        return {}
    url = properties.get("url") or properties.get("uri")
    if not url:
        return {}
    try:
        query = urlsplit(str(url)).query
    except ValueError:  # e.g. an unbalanced IPv6 bracket: no campaign, not an error
        return {}
    if not query:
        return {}
    tags = {}
    for key, value in parse_query(query):
        tags.setdefault(key.lower(), value)
    found = {}
    for name, tag in CAMPAIGN_TAGS.items():
        value = tags.get(f"utm_{tag}") or tags.get(f"woo_{tag}")
        if value:
            found[name] = value
    return found
