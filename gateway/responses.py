"""What the gateway answers: status, content type and body, for every format of SPEC §7.

Pure and precomputed: every (format, status) body is built once at import, so the hot path
only picks one. JavaScript is the default because browsers load the request as a script: a
success is an empty statement (or the JS actions triggers queued for the visitor), an
error is a comment that says why, so a page's console shows it without breaking anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

FORMATS = ("js", "json", "xml")
CONTENT_TYPES = {
    "js": b"application/javascript; charset=utf-8",
    "json": b"application/json",
    "xml": b"application/xml; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    content_type: bytes
    body: bytes


def response_format(requested: object) -> str:
    """``response=json|xml`` picks the format; anything else is JavaScript."""
    value = str(requested or "").strip().lower()
    return value if value in CONTENT_TYPES else "js"


OVER_QUOTA = 402  # logged like any other request, but its project is over its monthly quota
OVER_QUOTA_MESSAGE = "the project is over its monthly quota: logged, but triggers do not run"


def render(fmt: str, status: int, message: str | None = None, **extra: int) -> Reply:
    if status == OVER_QUOTA and message is None:
        message = OVER_QUOTA_MESSAGE
    success = status < 300
    if fmt == "json":
        doc: dict[str, object] = {"success": success}
        if message:
            doc["message"] = message
        doc.update(extra)
        body = json.dumps(doc, separators=(",", ":")).encode()
    elif fmt == "xml":
        attrs = "".join(f" {k}={quoteattr(str(v))}" for k, v in extra.items())
        text = f" message={quoteattr(message)}" if message else ""
        body = f'<response success="{str(success).lower()}"{text}{attrs}/>'.encode()
    else:
        # A comment can never be closed early by the message, so the script stays harmless.
        text = (message or "").replace("*/", "* /")
        body = b";" if success else f"/* {status}: {text} */".encode()
    return Reply(status, CONTENT_TYPES[fmt], body)


_PLAIN = {(fmt, status): render(fmt, status)
          for fmt in FORMATS for status in (200, 202, OVER_QUOTA)}


def success(fmt: str, status: int) -> Reply:
    """The prebuilt answer to an accepted (logged) request: 200, 202, or 402 over quota."""
    return _PLAIN[(fmt, status)]


def script(status: int, code: bytes) -> Reply:
    """An accepted request's JavaScript answer that runs the visitor's queued actions."""
    return Reply(status, CONTENT_TYPES["js"], code)
