import json
import xml.etree.ElementTree as ET

import pytest

from gateway.responses import FORMATS, render, response_format, success

STATUSES = (200, 202, 400, 401, 402, 403, 413, 414, 503)


@pytest.mark.parametrize(("requested", "fmt"), [
    ("json", "json"), ("JSON", "json"), ("xml", "xml"), ("js", "js"), ("", "js"), (None, "js"),
    ("html", "js"),
])
def test_response_format(requested, fmt):
    assert response_format(requested) == fmt


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_and_status_renders_a_parseable_body(fmt, status):
    reply = render(fmt, status, None if status < 300 or status == 402 else "why */ it failed")
    assert reply.status == status
    ok = status < 300
    if fmt == "json":
        doc = json.loads(reply.body)
        assert doc["success"] is ok
        assert ("message" in doc) is (not ok)
        assert reply.content_type == b"application/json"
    elif fmt == "xml":
        root = ET.fromstring(reply.body)
        assert root.tag == "response" and root.get("success") == str(ok).lower()
    else:
        assert reply.content_type.startswith(b"application/javascript")
        if ok:
            assert reply.body == b";"
        else:  # one comment that the message cannot close early
            assert reply.body.startswith(b"/*") and reply.body.count(b"*/") == 1


def test_success_is_prebuilt_and_counts_are_reported():
    assert success("json", 202) is success("json", 202)
    assert json.loads(render("json", 200, accepted=2, rejected=1).body) == {
        "success": True, "accepted": 2, "rejected": 1}
