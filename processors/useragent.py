"""Browser, OS and device from a User-Agent, for requests that did not say. Pure.

A short ordered list of substring rules, not a full UA database: enough to fill the built-ins
the SDKs usually send themselves. Order matters (Edge and Opera claim to be Chrome, Chrome
claims to be Safari, iPad claims to be a Mac on newer iOS).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

BROWSERS = (("bot", "Bot"), ("spider", "Bot"), ("crawl", "Bot"), ("edg/", "Edge"),
            ("opr/", "Opera"), ("opera", "Opera"), ("samsungbrowser", "Samsung Internet"),
            ("firefox", "Firefox"), ("fxios", "Firefox"), ("crios", "Chrome"),
            ("chrome", "Chrome"), ("chromium", "Chrome"), ("safari", "Safari"),
            ("msie", "Internet Explorer"), ("trident/", "Internet Explorer"))
SYSTEMS = (("windows", "Windows"), ("iphone", "iOS"), ("ipad", "iOS"), ("ipod", "iOS"),
           ("android", "Android"), ("cros", "Chrome OS"), ("mac os x", "Mac OS X"),
           ("macintosh", "Mac OS X"), ("linux", "Linux"))


@functools.lru_cache(maxsize=4096)  # user agents repeat: a hit is a dict lookup
def classify(user_agent: str) -> Mapping[str, str]:
    """``browser``, ``os`` and ``device`` ("desktop", "mobile", "tablet" or "bot"). Read it,
    do not change it: answers are shared between requests of the same user agent."""
    ua = user_agent.lower()
    if not ua:
        return {}
    browser = next((name for needle, name in BROWSERS if needle in ua), "Other")
    system = next((name for needle, name in SYSTEMS if needle in ua), "Other")
    if browser == "Bot":
        device = "bot"
    elif "ipad" in ua or "tablet" in ua or ("android" in ua and "mobile" not in ua):
        device = "tablet"
    elif "mobi" in ua or "iphone" in ua or "ipod" in ua:
        device = "mobile"
    else:
        device = "desktop"
    return {"browser": browser, "os": system, "device": device}
