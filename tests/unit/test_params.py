import pytest

from gateway.errors import MalformedBody
from gateway.params import decode_body, decode_push_lines, project_param, scan_query


@pytest.mark.parametrize(("query", "expected"), [
    ("project=a.com&event=pv", {"project": "a.com"}),
    ("cv_email=A%40b.c&cookie=x+y", {"cv_email": "A@b.c", "cookie": "x y"}),
    ("cv%5Fid=u1", {"cv_id": "u1"}),
    ("cookie=a&cookie=b", {"cookie": "b"}),
    ("project", {"project": ""}),
    ("&&==&", {}),
    ("cookie=%FF%FE", {"cookie": "\ufffd\ufffd"}),
    ("ce_x=1&foo=2", {}),
    ("response=json&ip=1.2.3.4&cv_name=Rio", {"response": "json", "ip": "1.2.3.4",
                                              "cv_name": "Rio"}),
], ids=["plain", "encoded-values", "encoded-name", "last-wins", "no-equals", "garbage",
        "invalid-utf8", "ignores-others", "decision-params"])
def test_scan_query(query, expected):
    assert scan_query(query) == expected


@pytest.mark.parametrize(("params", "project"), [
    ({"project": "a", "host": "b"}, "a"),
    ({"Project": "a", "host": "b"}, "a"),
    ({"host": "b", "domain": "c"}, "b"),
    ({"domain": "c", "website": "d"}, "c"),
    ({"website": "d", "alias": "e"}, "d"),
    ({"alias": "e"}, "e"),
    ({"project": "", "alias": "e"}, "e"),
    ({}, ""),
], ids=["project", "Project", "host", "domain", "website", "alias", "empty-skipped", "none"])
def test_project_param_first_present_wins(params, project):
    assert project_param(params) == project


MULTIPART = (b'--XX\r\nContent-Disposition: form-data; name="project"\r\n\r\nshop\r\n'
             b'--XX\r\nContent-Disposition: form-data; name="ce_x"\r\n\r\n1 2\r\n--XX--\r\n')


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("application/x-www-form-urlencoded", b"project=shop&ce_x=1+2", {"project": "shop",
                                                                      "ce_x": "1 2"}),
    ("", b"project=shop", {"project": "shop"}),
    ("application/json", b'{"project":"shop","n":1,"b":true,"o":{"a":1}}',
     {"project": "shop", "n": 1, "b": True, "o": '{"a":1}'}),
    ("application/json; charset=utf-8", b'{"a":"\xff"}', {"a": "\ufffd"}),
    ("multipart/form-data; boundary=XX", MULTIPART, {"project": "shop", "ce_x": "1 2"}),
    ("application/json", b"   ", {}),
], ids=["form", "no-content-type", "json-types-kept", "json-bad-utf8", "multipart", "empty"])
async def test_decode_body(content_type, body, expected):
    assert await decode_body(content_type, body) == expected


@pytest.mark.parametrize(("content_type", "body"), [
    ("application/json", b"[1,2]"),
    ("application/json", b"{nope"),
    ("application/json", b'"text"'),
    ("multipart/form-data; boundary=XX", b"garbage"),
    ("multipart/form-data", MULTIPART),
], ids=["json-array", "json-invalid", "json-scalar", "multipart-garbage", "no-boundary"])
async def test_decode_body_refuses_what_cannot_be_parsed(content_type, body):
    with pytest.raises(MalformedBody):
        await decode_body(content_type, body)


def test_push_lines_keep_good_lines_and_name_bad_ones():
    payload = ('{"endpoint":"ce","params":{"event":"a","n":1}}\n\n'
               "nope\n"
               '{"endpoint":"ping","params":{"cookie":"c"}}\n'
               '[1]\n{"params":{"event":"b"}}')
    assert decode_push_lines(payload) == [
        ("ce", {"event": "a", "n": 1}),
        "line 3: not JSON",
        ("ping", {"cookie": "c"}),
        "line 5: expected an object with 'endpoint' and 'params'",
        ("ce", {"event": "b"}),
    ]
