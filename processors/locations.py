"""Where an address is: country from a database that comes with a package, city from the
operator's, offline.

The country comes from ``iptocc``: the five Regional Internet Registries' own delegation
statistics, embedded in its wheel (code MIT OR Apache-2.0; the data is the registries' public
statistics and carries no licence to agree to). It is the country a block was assigned to,
which agrees with MaxMind's for about 95 % of IPv4 addresses. ``geoip2fast`` ships country data
too, but built from MaxMind's GeoLite2, whose EULA would bind every operator and recipient of
our image; so it is not the default (README, "Derived names").

An operator licensed for a city-level MaxMind-format database (DB-IP City Lite, GeoLite2-City,
their own) points ``TRACKPIPE_CITY_DATABASE`` at it, and it is read with ``maxminddb``: country,
region and city where it knows the address, the registries' country where it does not.

Only ``addresses.locatable`` addresses are looked up: private, loopback, reserved and malformed
ones get no location. Nothing is cached here: ``processors.enrichment`` remembers what a
(user agent, address) pair derives, which a visitor's requests repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import iptocc
import iso3166
import maxminddb

from processors.addresses import locatable

# The registries' codes for space assigned to a region, not to one country.
REGIONS = {"EU": "European Union", "AP": "Asia/Pacific Region"}
# ISO 3166's short names, but the common form where that one reads as a definition.
COMMON_NAMES = {
    "BO": "Bolivia", "CD": "DR Congo", "FK": "Falkland Islands", "FM": "Micronesia",
    "GB": "United Kingdom", "IR": "Iran", "KP": "North Korea", "KR": "South Korea",
    "MD": "Moldova", "RU": "Russia", "SY": "Syria", "TZ": "Tanzania", "US": "United States",
    "VE": "Venezuela", "VG": "British Virgin Islands", "VI": "U.S. Virgin Islands",
    "VN": "Vietnam", "LA": "Laos", "BN": "Brunei", "PS": "Palestine", "TW": "Taiwan",
}


class LocationError(Exception):
    """The city database cannot be read; the message names the setting."""


def country_name(code: str) -> str | None:
    """The English name of an ISO 3166-1 alpha-2 code, or None for a code it is not."""
    if code in COMMON_NAMES:
        return COMMON_NAMES[code]
    if code in REGIONS:
        return REGIONS[code]
    country = iso3166.countries_by_alpha2.get(code)
    return country.apolitical_name if country is not None else None


def _country(code: str | None) -> dict[str, str]:
    if not code:
        return {}
    name = country_name(code)
    return {"country": code, "country_name": name} if name else {"country": code}


def _english(node: Any) -> str | None:
    names = node.get("names") if isinstance(node, dict) else None
    name = names.get("en") if isinstance(names, dict) else None
    return name if isinstance(name, str) and name else None


def from_city_record(record: Any) -> dict[str, str]:
    """Country, region and city of a GeoIP2/DB-IP city record (``maxminddb``'s dict)."""
    if not isinstance(record, dict):
        return {}
    country = record.get("country")
    code = country.get("iso_code") if isinstance(country, dict) else None
    found = _country(code if isinstance(code, str) else None)
    if found and "country_name" not in found and _english(country):
        found["country_name"] = _english(country)  # type: ignore[assignment]
    subdivisions = record.get("subdivisions")
    region = _english(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions \
        else None
    city = _english(record.get("city"))
    if region:
        found["region"] = region
    if city:
        found["city"] = city
    return found


def open_city_database(path: Path) -> maxminddb.Reader:
    try:
        return maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise LocationError(f"TRACKPIPE_CITY_DATABASE={str(path)!r} cannot be read as a "
                            f"MaxMind-format database: {exc}") from None


class Locations:
    """Country (and region and city, with a city database) of an address."""

    def __init__(self, city_database: Path | None = None) -> None:
        self.city_database = city_database
        self._reader = open_city_database(city_database) if city_database else None

    def locate(self, ip: str) -> Mapping[str, str]:
        """The derived location of ``ip`` (nothing for an address with no place)."""
        address = locatable(ip) if ip else None
        if address is None:
            return {}
        text = str(address)
        if self._reader is not None:
            found = from_city_record(self._reader.get(text))
            if found:
                return found
        return _country(iptocc.country_code(text))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
