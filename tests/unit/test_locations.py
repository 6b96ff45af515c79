"""Where an address is and what of it is kept (``processors.addresses``,
``processors.locations``): public addresses of the shipped database give their country;
private, loopback, reserved and malformed ones nothing; an operator's city database adds region
and city; anonymization of both families."""

import pytest

from processors.addresses import anonymize, locatable
from processors.locations import LocationError, Locations, country_name


@pytest.fixture(scope="module")
def locations():
    return Locations()


# Blocks whose registry record has not moved in years (the registries' own servers, Google's).
PUBLIC = [
    ("8.8.8.8", "US", "United States"),
    ("2001:4860:4860::8888", "US", "United States"),
    ("193.0.6.139", "NL", "Netherlands"),        # RIPE NCC
    ("2001:67c:2e8:22::c100:68b", "NL", "Netherlands"),  # RIPE NCC
    ("1.0.16.1", "JP", "Japan"),
    ("200.160.2.3", "BR", "Brazil"),              # NIC.br
    ("81.2.69.142", "GB", "United Kingdom"),
    ("::ffff:8.8.8.8", "US", "United States"),   # IPv4-mapped: the IPv4 address
    (" 8.8.8.8 ", "US", "United States"),
]


@pytest.mark.parametrize(("ip", "code", "name"), PUBLIC, ids=[p[0].strip() for p in PUBLIC])
def test_a_public_address_has_the_country_of_the_shipped_database(locations, ip, code, name):
    assert dict(locations.locate(ip)) == {"country": code, "country_name": name}


NOWHERE = ["10.1.2.3", "172.16.0.1", "192.168.1.1", "127.0.0.1", "169.254.169.254",
           "100.64.0.1", "0.0.0.0", "192.0.2.1", "198.51.100.7", "203.0.113.9", "198.18.0.1",
           "224.0.0.251", "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fe80::1%eth0",
           "fc00::1", "fd12:3456:789a::1", "ff02::1", "2001:db8::1", "2002:808:808::1",
           "2001::1", "64:ff9b::808:808", "::ffff:10.0.0.1", "3fff::1",
           "", "unknown", "1.2.3", "1.2.3.4.5", "999.1.1.1", "8.8.8.8/32", "::g", "<script>"]


@pytest.mark.parametrize("ip", NOWHERE)
def test_private_loopback_reserved_and_malformed_addresses_have_no_location(locations, ip):
    assert locatable(ip) is None
    assert dict(locations.locate(ip)) == {}


@pytest.mark.parametrize(("ip", "kept"), [
    ("203.0.113.195", "203.0.113.0"),
    ("8.8.8.8", "8.8.8.0"),
    ("10.0.0.255", "10.0.0.0"),
    ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
    ("2a00:1450:4001:81c::200e", "2a00:1450:4001::"),
    ("2001:4860:4860::8888", "2001:4860:4860::"),
    ("fe80::1%eth0", "fe80::"),
    ("::1", "::"),
    ("::ffff:198.51.100.7", "::ffff:198.51.100.0"),
    (" 8.8.4.4 ", "8.8.4.0"),
    ("unknown", ""),
    ("", ""),
    ("1.2.3.4, 5.6.7.8", ""),
], ids=lambda value: value or "empty")
def test_anonymize_zeroes_the_last_octet_of_ipv4_and_the_last_80_bits_of_ipv6(ip, kept):
    assert anonymize(ip) == kept


def test_an_anonymized_address_has_the_location_of_its_block_for_ipv6_and_ipv4():
    """The lookup runs before anonymization; the zeroed address still names its block, which is
    why --ip-anonymize costs no country."""
    locations = Locations()
    assert locations.locate(anonymize("8.8.8.8")) == locations.locate("8.8.8.8")


@pytest.mark.parametrize(("code", "name"), [("DE", "Germany"), ("US", "United States"),
                                            ("GB", "United Kingdom"), ("KR", "South Korea"),
                                            ("TW", "Taiwan"), ("EU", "European Union"),
                                            ("XX", None)])
def test_country_names_are_the_common_english_ones(code, name):
    assert country_name(code) == name


@pytest.fixture
def city_database(tmp_path):
    """A small city database in MaxMind's format, as DB-IP City Lite and GeoLite2-City are."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-City", ipv4_compatible=True)
    writer.insert_network(IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
        "city": {"names": {"en": "London"}}})
    writer.insert_network(IPSet(["2a02:8108::/32"]), {
        "country": {"iso_code": "DE", "names": {"en": "Germany"}},
        "subdivisions": [{"names": {"en": "Berlin"}}], "city": {"names": {"en": "Berlin"}}})
    writer.insert_network(IPSet(["10.0.0.0/8"]), {  # a database may hold private space
        "country": {"iso_code": "DE"}, "city": {"names": {"en": "Intranet"}}})
    path = tmp_path / "city.mmdb"
    writer.to_db_file(str(path))
    return path


@pytest.mark.parametrize(("ip", "expected"), [
    ("81.2.69.142", {"country": "GB", "country_name": "United Kingdom", "region": "England",
                     "city": "London"}),
    ("2a02:8108:1:2::3", {"country": "DE", "country_name": "Germany", "region": "Berlin",
                          "city": "Berlin"}),
    ("8.8.8.8", {"country": "US", "country_name": "United States"}),  # not in it: registries'
    ("10.1.2.3", {}),                                                  # never looked up
])
def test_a_city_database_adds_region_and_city_where_it_knows_the_address(city_database, ip,
                                                                         expected):
    locations = Locations(city_database)
    try:
        assert dict(locations.locate(ip)) == expected
    finally:
        locations.close()


def test_a_city_database_that_cannot_be_read_names_the_setting(tmp_path):
    bad = tmp_path / "city.mmdb"
    bad.write_bytes(b"not a database")
    with pytest.raises(LocationError, match="TRACKPIPE_CITY_DATABASE"):
        Locations(bad)
