import ipaddress

import pytest

from gateway.addresses import client_ip

PROXY = (ipaddress.ip_network("10.0.0.0/8"),)


@pytest.mark.parametrize(("peer", "xff", "ip_param", "trusted", "expected"), [
    ("1.1.1.1", "", "", (), "1.1.1.1"),
    ("1.1.1.1", "9.9.9.9", "", (), "1.1.1.1"),
    ("1.1.1.1", "9.9.9.9", "", PROXY, "1.1.1.1"),
    ("10.0.0.1", "9.9.9.9", "", PROXY, "9.9.9.9"),
    ("10.0.0.1", "6.6.6.6, 9.9.9.9, 10.0.0.2", "", PROXY, "9.9.9.9"),
    ("10.0.0.1", "10.0.0.3, 10.0.0.2", "", PROXY, "10.0.0.3"),
    ("10.0.0.1", "", "", PROXY, "10.0.0.1"),
    ("1.1.1.1", "", "8.8.4.4", (), "8.8.4.4"),
    ("1.1.1.1", "", "2001:db8::1", (), "2001:db8::1"),
    ("1.1.1.1", "", "not-an-ip", (), "1.1.1.1"),
], ids=["peer", "xff-untrusted-peer-ignored", "xff-peer-not-a-proxy", "xff-from-proxy",
        "rightmost-untrusted-hop", "all-hops-trusted", "proxy-without-xff", "ip-param",
        "ip-param-v6", "bad-ip-param-ignored"])
def test_client_ip(peer, xff, ip_param, trusted, expected):
    assert client_ip(peer, xff, ip_param, trusted) == expected
