"""schemas.query gives exactly what urllib.parse.parse_qsl gives, on chosen and random input."""

import random
from urllib.parse import parse_qsl

import pytest

from schemas.query import parse_query

CASES = [
    "", "&", "&&", "a", "a=", "=", "=b", "a=b", "a=b&c=d", "a=b&&c", "a==b", "a=b=c",
    "a+b=c+d", "a%20b=c%20d", "a=%", "a=%zz", "a=%2", "%=%", "a=%E2%82%AC", "a=%FF%FE",
    "a=1;b=2", "a=b&a=c", "ce_url=https%3A%2F%2Fx.example%2Fp%3Futm_source%3Dnews",
    "name=Ünïcödé&x=日本", "+=+", "a=+&b=%2B", "a=b&", "&a=b", "a;b=c", "a=b#c",
]


@pytest.mark.parametrize("keep_blank", [True, False])
@pytest.mark.parametrize("qs", CASES)
def test_chosen_cases_match_the_standard_library(qs, keep_blank):
    assert parse_query(qs, keep_blank) == parse_qsl(qs, keep_blank_values=keep_blank,
                                                    errors="replace")


@pytest.mark.parametrize("keep_blank", [True, False])
def test_random_strings_match_the_standard_library(keep_blank):
    rng = random.Random(20261127)
    alphabet = "ab=&%+2Fe;Ü日 #"
    for _ in range(20_000):
        qs = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
        assert parse_query(qs, keep_blank) == parse_qsl(
            qs, keep_blank_values=keep_blank, errors="replace"), qs


def test_random_escapes_match_the_standard_library():
    rng = random.Random(20261201)
    alphabet = ["%C3", "%A9", "%e2", "%82", "%ac", "%2", "%", "+", "=", "&", "x", "é", "%FF"]
    for _ in range(20_000):
        qs = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 12)))
        assert parse_query(qs, True) == parse_qsl(qs, keep_blank_values=True,
                                                  errors="replace"), qs
