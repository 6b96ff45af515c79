"""Browser, OS and device from a User-Agent header, with ua-parser (uap-core's rules).

One parser per process (``resolver``): ua-parser's compiled backend (``ua-parser[regex]``,
``ua-parser-rs``, a Rust core over uap-core's regexes) built once, since building it takes
about a third of a second (ua-parser 1.0.0 rebuilt its lazy default parser on every call,
uap-python issue 253). In front of it each ``UserAgents`` keeps an LRU cache of what it
derived, keyed by the header: real traffic repeats a few distinct user agents, a miss costs
20-50 µs and a hit well under one. Only the first ``MAX_PARSED`` characters are parsed (and
cached), so a 10 KB header costs what a long real one does.

``describe`` derives, where known: ``browser`` and ``browser_version`` (the family and major
version), ``os`` and ``os_version`` (major.minor), ``device_type`` (``device_type_of``: desktop,
mobile, tablet, bot; also as ``device``, its name in earlier lines) and ``device_brand`` and
``device_model``. uap-core names no device type, so the rule below derives it from what it does
name (its "Spider" device for crawlers, the device family and brand, the OS, and the ``Mobile``
token that Android browsers send on phones only).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from ua_parser import Domain, PartialResult, load_lazy_builtins
from ua_parser.regex import Resolver

MAX_PARSED = 1024     # characters of a header parsed; real ones stay well below
CACHE_SIZE = 10_000   # distinct user agents remembered (~1 KB each at most)

MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "BlackBerry Tablet OS",
                       "KaiOS", "Firefox OS", "Symbian OS", "Symbian^3", "Tizen", "HarmonyOS",
                       "webOS", "Sailfish", "Ubuntu Touch", "Bada", "MeeGo", "Maemo"})
DESKTOP_OS = frozenset({"Windows", "Mac OS X", "Linux", "Ubuntu", "Chrome OS", "Fedora",
                        "Debian", "Red Hat", "SUSE", "openSUSE", "Mint", "Arch Linux",
                        "Gentoo", "Slackware", "Mandriva", "CentOS", "FreeBSD", "OpenBSD",
                        "NetBSD", "Solaris", "Kubuntu", "Xubuntu", "Windows RT"})
TABLET_FAMILIES = ("iPad", "Kindle", "Generic Tablet")
PHONE_FAMILIES = ("iPhone", "iPod", "iOS-Device", "Generic Smartphone", "Generic Feature Phone")
# uap-core's placeholders: a kind of device, not a brand or a model anyone would group by
NOT_A_BRAND = frozenset({"Spider", "Generic", "Generic_Android", "Generic_Android_Tablet",
                         "Generic_Inettv"})
NOT_A_MODEL = frozenset({"Desktop", "Smartphone", "Tablet", "Feature Phone", "iOS-Device",
                         "Generic Smartphone", "Generic Tablet", "Generic Feature Phone"})


# What uap-core misses of a crawler's self-description (Bytespider): case-sensitive, so that a
# CUBOT phone is not one.
CRAWLER = re.compile(r"[Bb]ot\b|[Ss]pider|[Cc]rawler")


@functools.cache
def resolver() -> Resolver:
    """This process's parser: uap-core's rules on the Rust backend, built on first use."""
    return Resolver(load_lazy_builtins())


def device_type_of(parsed: PartialResult) -> str | None:
    """desktop, mobile, tablet or bot; None when the user agent does not say (a library such
    as curl or python-requests, a TV, an unknown app)."""
    device, os = parsed.device, parsed.os
    family = device.family if device else ""
    ua = parsed.string
    if family == "Spider" or (device is not None and device.brand == "Spider") \
            or CRAWLER.search(ua):
        return "bot"
    system = os.family if os else ""
    if (family.startswith(TABLET_FAMILIES) or (device is not None and (
            device.model == "Tablet" or device.brand == "Generic_Android_Tablet"))
            # Android browsers on tablets leave out "Mobile" (apps' Dalvik agents do too)
            or (system == "Android" and "Mobile" not in ua and "Safari/" in ua)):
        return "tablet"
    if (system in MOBILE_OS or family.startswith(PHONE_FAMILIES) or "Mobi" in ua
            or (device is not None and device.model in ("Smartphone", "Feature Phone"))):
        return "mobile"
    if system in DESKTOP_OS:
        return "desktop"
    return None


def fields_of(parsed: PartialResult) -> dict[str, str]:
    """The derived names a parse result gives, only those it knows."""
    found: dict[str, str] = {}
    browser, os, device = parsed.user_agent, parsed.os, parsed.device
    if browser is not None:
        found["browser"] = browser.family
        if browser.major:
            found["browser_version"] = browser.major
    if os is not None:
        found["os"] = os.family
        if os.major:
            found["os_version"] = os.major + (f".{os.minor}" if os.minor else "")
    kind = device_type_of(parsed)
    if kind is not None:
        found["device_type"] = found["device"] = kind  # device: its name in earlier lines
    if device is not None and device.brand and device.brand not in NOT_A_BRAND:
        found["device_brand"] = device.brand
        if device.model and device.model not in NOT_A_MODEL:
            found["device_model"] = device.model
    return found


class UserAgents:
    """What a user agent says, parsed once per distinct header (``cache_size`` remembered)."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        parse = resolver()

        def derive(user_agent: str) -> Mapping[str, str]:
            return fields_of(parse(user_agent, Domain.ALL))

        self._cached = functools.lru_cache(maxsize=cache_size)(derive)

    def describe(self, user_agent: str) -> Mapping[str, str]:
        """The derived names of ``user_agent`` (nothing for an empty one). Shared between
        requests of the same user agent: read it, never change it."""
        if not user_agent:
            return {}
        return self._cached(user_agent[:MAX_PARSED])

    def hit_rate(self) -> tuple[int, int]:
        """(hits, misses) of the cache so far."""
        info = self._cached.cache_info()
        return info.hits, info.misses
