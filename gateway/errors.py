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

Third-party errors (aiokafka, OS errors on the spool) are translated into these at the one
boundary that meets them; ``HTTP_STATUS`` is the only status table. Headers over their bytes
or count never reach the handler: the HTTP protocol answers them 431 (``gateway.http``).
"""

from __future__ import annotations


class GatewayError(Exception):
    message = "error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)
        self.message = message or self.message


class BadInput(GatewayError):
    pass


class MalformedBody(BadInput):
    message = "the body cannot be parsed"


class BodyTooLarge(BadInput):
    message = "the body is too large"


class TooLarge(BadInput):
    message = "the request makes more than the gateway takes in one request"


class RequestTimeout(BadInput):
    message = "the body took too long to arrive"


class UrlTooLong(BadInput):
    message = "the URL is too long"


class NotAllowed(GatewayError):
    pass


class Unauthenticated(NotAllowed):
    message = "secure tracking is on: authenticate with HTTP Basic auth"


class UnknownProject(NotAllowed):
    message = "unknown or missing project"


class Excluded(NotAllowed):
    message = "the visitor is excluded by the project"


class Unavailable(GatewayError):
    pass


class SpoolFull(Unavailable):
    message = "temporarily unavailable, retry later"


class RegistryNotLoaded(Unavailable):
    message = "starting up, retry later"


HTTP_STATUS: dict[type[GatewayError], int] = {
    MalformedBody: 400,
    RequestTimeout: 408,
    BodyTooLarge: 413,
    TooLarge: 413,
    UrlTooLong: 414,
    Unauthenticated: 401,
    UnknownProject: 403,
    Excluded: 403,
    SpoolFull: 503,
    RegistryNotLoaded: 503,
}


def status_of(error: GatewayError) -> int:
    return HTTP_STATUS[type(error)]
