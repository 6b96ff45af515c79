import base64

import pytest

from gateway.errors import Excluded, Unauthenticated, UnknownProject
from gateway.projects import CompiledProject, ProjectTable, admit, authenticated
from schemas.identifiers import identifiers_of
from schemas.project import ProjectError, ProjectRecord


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "bad/name"}, "invalid project name"),
    ({"name": "../../etc"}, "invalid project name"),
    ({"name": "a..b"}, "invalid project name"),
    ({"name": ".hidden"}, "invalid project name"),
    ({"name": "a\x00b"}, "invalid project name"),
    ({"name": ""}, "invalid project name"),
    ({"name": "x" * 129}, "invalid project name"),
    ({"name": "a", "aliases": ("b c",)}, "invalid alias"),
    ({"name": "a", "aliases": ("A",)}, "own name"),
    ({"name": "a", "exclude_ips": ("1.2.3.4/99",)}, "invalid IP"),
    ({"name": "a", "exclude_ips": ("nope",)}, "invalid IP"),
    ({"name": "a", "exclude_user_agents": (" ",)}, "user-agent"),
    ({"name": "a", "exclude_visitors": ("",)}, "visitor"),
    ({"name": "a", "secret": ""}, "secret"),
    ({"name": "a", "quota": -1}, "quota"),
    ({"name": "a", "retention_days": 0}, "retention"),
])
def test_build_refuses_bad_definitions(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ProjectError, match=message):
        ProjectRecord.build(name, **kwargs)


def test_build_canonicalises_and_roundtrips():
    record = ProjectRecord.build("Shop.Example", aliases=("WWW.shop.example", "www.shop.example"),
                                 secret="s", exclude_ips=("10.0.0.0/8",), quota=5)
    assert record.name == "shop.example" and record.aliases == ("www.shop.example",)
    assert ProjectRecord.from_bytes(record.to_bytes()) == record
    assert record.public_dict()["secret"] == "<set>"


def test_secret_is_hidden_from_repr():
    assert "hunter2" not in repr(ProjectRecord.build("a", secret="hunter2"))


def table(*records):
    t = ProjectTable()
    for r in records:
        t.apply(r.name, r)
    return t


def test_table_finds_names_and_aliases_case_insensitively_and_forgets_removed():
    t = table(ProjectRecord.build("shop.example", aliases=("www.shop.example",)))
    assert t.find("SHOP.example").name == "shop.example"
    assert t.find(" www.shop.example ").name == "shop.example"
    assert t.find("other") is None and t.find("") is None
    t.apply("shop.example", None)
    assert t.find("www.shop.example") is None and len(t) == 0


def test_a_real_name_beats_another_projects_alias():
    t = table(ProjectRecord.build("a", aliases=("b",)), ProjectRecord.build("b"))
    assert t.find("b").name == "b"


def basic(password, user="u"):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(("header", "ok"), [
    (basic("s3cret"), True), (basic("s3cret", user=""), True), (basic("wrong"), False),
    ("Bearer s3cret", False), ("Basic !!!", False), ("", False), ("basic " + basic("s3cret")[6:],
                                                                  True),
], ids=["right", "no-user", "wrong", "other-scheme", "bad-base64", "missing", "scheme-case"])
def test_authenticated(header, ok):
    assert authenticated(b"s3cret", header) is ok


GUARDED = CompiledProject.of(ProjectRecord.build(
    "p", secret="s3cret", exclude_ips=("10.0.0.0/8", "192.0.2.7"),
    exclude_user_agents=("BadBot",), exclude_visitors=("qa@shop.example", "u-test", "c-test",
                                                       "Tester")))


@pytest.mark.parametrize(("project", "params", "ip", "ua", "auth", "error"), [
    (None, {}, "1.1.1.1", "", "", UnknownProject),
    (GUARDED, {}, "1.1.1.1", "", "", Unauthenticated),
    (GUARDED, {}, "1.1.1.1", "", basic("nope"), Unauthenticated),
    (GUARDED, {}, "10.1.2.3", "", basic("s3cret"), Excluded),
    (GUARDED, {}, "192.0.2.7", "", basic("s3cret"), Excluded),
    (GUARDED, {}, "1.1.1.1", "Mozilla badbot/1", basic("s3cret"), Excluded),
    (GUARDED, {"cv_email": "QA@shop.example"}, "1.1.1.1", "", basic("s3cret"), Excluded),
    (GUARDED, {"cv_id": "u-test"}, "1.1.1.1", "", basic("s3cret"), Excluded),
    (GUARDED, {"cookie": "C-TEST"}, "1.1.1.1", "", basic("s3cret"), Excluded),
    (GUARDED, {"cv_name": "tester"}, "1.1.1.1", "", basic("s3cret"), Excluded),
    (GUARDED, {"cookie": "ok"}, "1.1.1.1", "Mozilla", basic("s3cret"), None),
    (GUARDED, {}, "not-an-ip", "", basic("s3cret"), None),
], ids=["unknown", "no-auth", "wrong-secret", "ip-cidr", "ip-exact", "user-agent", "email",
        "id", "cookie", "name", "admitted", "unparseable-ip-not-excluded"])
def test_admit(project, params, ip, ua, auth, error):
    ids = identifiers_of(params)
    if error is None:
        assert admit(project, params, ids, ip, ua, auth) is project
    else:
        with pytest.raises(error):
            admit(project, params, ids, ip, ua, auth)
