import pytest

from gateway.errors import MalformedBody
from gateway.params import (
    count_push_lines,
    decode_body,
    decode_push_lines,
    project_param,
    push_lines,
    scan_query,
    valid_text,
)


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


# Every line break str.splitlines() knows; a push splits on "\n" only.
LINE_BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
               "\u2029"]


@pytest.mark.parametrize("payload", [
    "", "\n", "{}", "{}\n", "{}\n{}", "{}\n\n{}\n", "\n\n\n", *(
        "{}" + br + "{}" + br for br in LINE_BREAKS)],
    ids=lambda p: repr(p))
def test_the_line_count_is_what_the_split_makes(payload):
    assert count_push_lines(payload) == len(push_lines(payload))


@pytest.mark.parametrize("line_break", LINE_BREAKS, ids=repr)
def test_only_newline_breaks_a_push_line_and_a_carriage_return_before_it_is_whitespace(
        line_break):
    payload = line_break.join(['{"params":{"event":"a"}}'] * 5000)
    lines = decode_push_lines(payload)
    if line_break in ("\n", "\r\n"):
        assert count_push_lines(payload) == 5000 and lines == [("ce", {"event": "a"})] * 5000
    else:  # one line, which is not JSON: never 5,000 lines past the cap
        assert count_push_lines(payload) == 1 and lines == ["line 1: not JSON"]


def test_a_line_break_inside_a_json_string_stays_in_the_value():
    payload = '{"params":{"event":"a\u2028b\u0085c"}}\n{"params":{"event":"d"}}'
    assert decode_push_lines(payload) == [("ce", {"event": "a\u2028b\u0085c"}),
                                          ("ce", {"event": "d"})]


UTF7_SURROGATE = "+2AA-"  # UTF-7 for a lone U+D800
MULTIPART_UTF7 = (b'--XX\r\nContent-Disposition: form-data; name="cookie' + UTF7_SURROGATE.encode()
                  + b'"\r\n\r\na' + UTF7_SURROGATE.encode() + b'\r\n--XX--\r\n')


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("application/json", b'{"cv_id":"a\\ud800","cookie":"\\udfff\\ud800b"}',
     {"cv_id": "a\ufffd", "cookie": "\ufffd\ufffdb"}),
    ("application/json", b'{"\\ud800":"x"}', {"\ufffd": "x"}),
    ("application/json", b'{"ce_o":{"k":["\\udc00"]}}', {"ce_o": '{"k":["\ufffd"]}'}),
    ("application/json", b'{"ce_ok":"\\ud83d\\ude00"}', {"ce_ok": "\U0001f600"}),
    ("application/x-www-form-urlencoded", b"cookie=%ED%A0%80", {"cookie": "\ufffd" * 3}),
    ("multipart/form-data; boundary=XX; charset=utf-7", MULTIPART_UTF7,
     {"cookie\ufffd": "a\ufffd"}),
], ids=["json-values", "json-name", "json-nested", "json-pair-kept", "form-cesu",
        "multipart-utf7"])
async def test_a_lone_surrogate_in_a_body_becomes_the_replacement_character(content_type, body,
                                                                             expected):
    params = await decode_body(content_type, body)
    assert params == expected
    for name, value in params.items():  # what every later reader does with them
        (name + str(value)).encode()


def test_a_lone_surrogate_in_a_push_line_becomes_the_replacement_character():
    [(_, params)] = decode_push_lines('{"params":{"cookie":"\\ud800","\\udbff":{"a":"\\ud800"}}}')
    assert params == {"cookie": "\ufffd", "\ufffd": '{"a":"\ufffd"}'}


@pytest.mark.parametrize("text", ["plain", "\ufffd", "é\U0001f600", "\ud800", "a\udc00b\ud83d"])
def test_valid_text_is_always_encodable_and_keeps_valid_text(text):
    valid = valid_text(text)
    valid.encode()
    if "\ud800" not in text and "\udc00" not in text:
        assert valid is text
