"""Why the gateway refuses a request, grouped by how the sender should react.

    GatewayError
    ├── BadInput            the request itself is wrong: fix it, do not retry as is
    │   ├── MalformedBody       400  a body that cannot be parsed at all (or nested too deep)
    │   ├── RequestTimeout      408  the body did not arrive within body_timeout_ms
    │   ├── BodyTooLarge        413  over max_body_bytes
    │   ├── TooLarge            413  a push over max_push_lines or over what its records may
    │   │                            add up to (max_push_expansion), a record Kafka cannot take
    │   └── UrlTooLong          414  over max_url_bytes
    ├── NotAllowed          the project refuses it: nothing is logged
    │   ├── Unauthenticated     401  secure tracking without valid Basic auth
    │   ├── UnknownProject      403  no project, or not registered
    │   └── Excluded            403  IP, user agent or visitor excluded by the project
    └── Unavailable         try again later (Retry-After)
        ├── SpoolFull           503  Kafka is slow and the local spool is full or unusable
        └── RegistryNotLoaded   503  the project registry has not been read yet (start-up)

Each class carries its own answer, as Starlette's ``HTTPException`` does: its ``status`` (the
number drawn above) and the ``headers`` it adds to the CORS ones: ``Connection: close`` when
the request was not read to its end (408, the body's 413, 414), ``WWW-Authenticate`` with the
401, ``Retry-After`` with a 503; a refusal for the project's sake (``NotAllowed``) also names the
ingestion warning it is (``warning``). There is no second table to keep in step with the tree.
Third-party errors (aiokafka, OS errors on the spool) are translated into these at the one
boundary that meets them. Headers over their bytes or count never reach the handler: the HTTP
protocol answers them 431 (``gateway.http``).
"""

from __future__ import annotations

from schemas.warning import Kind

Header = tuple[bytes, bytes]  # as ASGI sends it: lower-case name, value
# what was not read of the request is not worth keeping the connection for
CLOSE: tuple[Header, ...] = ((b"connection", b"close"),)


class GatewayError(Exception):
    message = "error"
    status: int  # set by every class that is raised (the tree's leaves)
    headers: tuple[Header, ...] = ()

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class BadInput(GatewayError):
    pass


class MalformedBody(BadInput):
    status = 400
    message = "the body cannot be parsed"


class BodyTooLarge(BadInput):
    status = 413
    headers = CLOSE
    message = "the body is too large"


class TooLarge(BadInput):
    status = 413
    message = "the request makes more than the gateway takes in one request"


class RequestTimeout(BadInput):
    status = 408
    headers = CLOSE
    message = "the body took too long to arrive"


class UrlTooLong(BadInput):
    status = 414
    headers = CLOSE
    message = "the URL is too long"


class NotAllowed(GatewayError):
    warning: Kind  # the ingestion warning the refusal is (set by every leaf)


class Unauthenticated(NotAllowed):
    status = 401
    warning = Kind.UNAUTHENTICATED
    headers = ((b"www-authenticate", b'Basic realm="trackpipe"'),)
    message = "secure tracking is on: authenticate with HTTP Basic auth"


class UnknownProject(NotAllowed):
    status = 403
    warning = Kind.UNKNOWN_PROJECT
    message = "unknown or missing project"


class Excluded(NotAllowed):
    status = 403
    warning = Kind.EXCLUDED
    message = "the visitor is excluded by the project"


class Unavailable(GatewayError):
    pass


class SpoolFull(Unavailable):
    status = 503
    headers = ((b"retry-after", b"5"),)
    message = "temporarily unavailable, retry later"


class RegistryNotLoaded(Unavailable):
    status = 503
    headers = ((b"retry-after", b"2"),)
    message = "starting up, retry later"
