import pytest

from schemas.identifiers import Identifiers, clean, identifiers_of


@pytest.mark.parametrize("value", ["", "null", "NULL", "undefined", "anonymous", "Guest", "0",
                                   "  ", None, " null "], ids=repr)
def test_nobody_values_are_absent(value):
    assert clean(value) is None


@pytest.mark.parametrize(("value", "expected"), [
    ("abc", "abc"), (" abc ", "abc"), (42, "42"), ("x" * 200, "x" * 140), ("00", "00"),
], ids=["plain", "trimmed", "number", "cut-to-140", "not-zero"])
def test_clean_keeps_real_values(value, expected):
    assert clean(value) == expected


@pytest.mark.parametrize(("params", "expected"), [
    ({"cv_id": "u1", "id": "legacy"}, Identifiers(id="u1")),
    ({"id": "legacy"}, Identifiers(id="legacy")),
    ({"cv_id": "null", "id": "legacy"}, Identifiers(id="legacy")),
    ({"cv_email": "A@B.com"}, Identifiers(email="a@b.com")),
    ({"email": "Legacy@B.com"}, Identifiers(email="legacy@b.com")),
    ({"cookie": "c1"}, Identifiers(cookie="c1")),
    ({"cookie": "undefined"}, Identifiers()),
    ({}, Identifiers()),
], ids=["cv_id-beats-id", "legacy-id", "nobody-cv_id-falls-back", "email-lowered",
        "legacy-email", "cookie", "nobody-cookie", "none"])
def test_identifiers_of(params, expected):
    assert identifiers_of(params) == expected


@pytest.mark.parametrize(("ids", "key"), [
    (Identifiers(id="u", email="e", cookie="c"), "cookie:c"),
    (Identifiers(id="u", email="e"), "id:u"),
    (Identifiers(email="e"), "email:e"),
    (Identifiers(), ""),
], ids=["cookie-first", "then-id", "then-email", "none"])
def test_visitor_key_prefers_the_device_cookie(ids, key):
    assert ids.visitor_key == key


def test_names_are_every_identifier_highest_first():
    assert identifiers_of({"cookie": "c1", "cv_email": "A@x", "id": "u"}).names() == [
        "id:u", "email:a@x", "cookie:c1"]
    assert identifiers_of({"cookie": "c1"}).names() == ["cookie:c1"]
    assert identifiers_of({"id": "anonymous"}).names() == []
