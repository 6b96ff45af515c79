"""Every error the gateway refuses with carries its own status and headers (gateway.errors),
and the handler answers exactly those: one case per error, the whole answer written out."""

import re

import pytest

from gateway import errors
from gateway.app import TrackingApp
from gateway.metrics import Metrics
from gateway.projects import ProjectTable

CORS = [(b"access-control-allow-origin", b"*"), (b"cache-control", b"no-store")]
CLOSE = [(b"connection", b"close")]

ANSWERS = {  # class → (status, headers after the CORS ones)
    errors.MalformedBody: (400, []),
    errors.RequestTimeout: (408, CLOSE),
    errors.BodyTooLarge: (413, CLOSE),
    errors.TooLarge: (413, []),
    errors.UrlTooLong: (414, CLOSE),
    errors.Unauthenticated: (401, [(b"www-authenticate", b'Basic realm="trackpipe"')]),
    errors.UnknownProject: (403, []),
    errors.Excluded: (403, []),
    errors.SpoolFull: (503, [(b"retry-after", b"5")]),
    errors.RegistryNotLoaded: (503, [(b"retry-after", b"2")]),
}
CASES = pytest.mark.parametrize(("error", "status", "headers"),
                                [(cls, *answer) for cls, answer in ANSWERS.items()],
                                ids=[cls.__name__ for cls in ANSWERS])


def leaves(cls):
    below = cls.__subclasses__()
    return [leaf for sub in below for leaf in leaves(sub)] if below else [cls]


def test_every_error_that_can_be_raised_has_a_case():
    assert set(leaves(errors.GatewayError)) == set(ANSWERS)


@CASES
def test_an_error_carries_its_status_and_headers(error, status, headers):
    assert (error.status, list(error.headers)) == (status, headers)


@CASES
def test_the_tree_in_the_docstring_draws_each_errors_status(error, status, headers):
    drawn = re.search(rf"── {error.__name__} +(\d+) ", errors.__doc__)
    assert drawn is not None and int(drawn.group(1)) == status


@CASES
@pytest.mark.parametrize("head", [False, True], ids=["GET", "HEAD"])
async def test_the_handler_answers_an_errors_status_and_headers(error, status, headers, head):
    sent = []

    async def send(message):
        sent.append(message)

    async def publish(key, value):
        raise AssertionError("a refusal publishes nothing")

    app = TrackingApp(ProjectTable(), publish, Metrics(), max_url_bytes=1024,
                      max_body_bytes=1024)
    await app.refuse(send, error("why"), "ce", "an-event-id", "js", head=head)
    body = f"/* {status}: why */".encode()
    assert sent == [
        {"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/javascript; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"x-event-id", b"an-event-id"),
            *CORS, *headers]},
        {"type": "http.response.body", "body": b"" if head else body},
    ]
    assert f'{{endpoint="ce",status="{status}"}} 1' in app.metrics.render()
