"""Reading the few parameters the gateway decides on, and decoding request bodies.

The gateway does not parse every parameter (the processors do, from the raw record): it scans
the query string for the names in ``DECISION_PARAMS`` only, decoding just those. Bodies are
decoded in full because they must travel as parameters anyway.

Pure apart from the (async) multipart parser: bytes in, dicts out, ``MalformedBody`` for a body that
cannot be parsed at all.

Every string a body decodes to is valid Unicode: a lone surrogate (JSON's ``"\\ud800"``, or a
multipart part in a charset such as UTF-7) becomes U+FFFD here, at the edge, so that nothing
later (Kafka keys, msgpack, day-log lines, file names) can meet one. The query and the headers
are decoded with ``errors="replace"`` and latin-1, which cannot make one.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.errors import MalformedBody
from schemas.endpoints import Endpoint

PROJECT_PARAMS = ("project", "Project", "host", "domain", "website", "alias")
DECISION_PARAMS = frozenset(
    PROJECT_PARAMS + ("cv_id", "id", "cv_email", "email", "cookie", "cv_name", "ip", "response"))


def scan_query(query: str) -> dict[str, str]:
    """The decision parameters of a query string; the last of repeated names wins."""
    found: dict[str, str] = {}
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if "%" in name or "+" in name:
            name = unquote_plus(name, errors="replace")
        if name in DECISION_PARAMS:
            found[name] = unquote_plus(value, errors="replace") if (
                "%" in value or "+" in value) else value
    return found


def project_param(params: dict[str, Any]) -> str:
    """The project a request names: the first present of PROJECT_PARAMS."""
    for name in PROJECT_PARAMS:
        value = params.get(name)
        if value:
            return str(value)
    return ""


async def decode_body(content_type: str, body: bytes, off_loop: bool = False
                      ) -> dict[str, Any]:
    """The parameters of a POST body; an empty body has none. With ``off_loop`` a form or
    JSON body is parsed in a thread (a 1 MiB form of empty fields takes most of a second)."""
    if not body.strip():
        return {}
    media = content_type.partition(";")[0].strip().lower()
    if media == "multipart/form-data":
        return valid_params(await decode_multipart(content_type, body))
    if media == "application/json" or media.endswith("+json"):
        parse = decode_json
    else:  # form encoding is the default: beacons and old SDKs often send no content type
        parse = decode_form
    params = await asyncio.to_thread(parse, body) if off_loop else parse(body)
    return valid_params(params)


SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """``text`` with every surrogate code point (never valid Unicode on its own: a JSON
    parser joins the pairs) replaced by U+FFFD."""
    return text if text.isascii() else SURROGATE.sub("\ufffd", text)


def valid_params(params: dict[str, Any]) -> dict[str, Any]:
    """Decoded parameters whose names and text values are all valid Unicode."""
    return {valid_text(k): valid_text(v) if isinstance(v, str) else v
            for k, v in params.items()}


def decode_form(body: bytes) -> dict[str, Any]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                          errors="replace"))


def decode_json(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body.decode("utf-8", "replace"))
        if not isinstance(obj, dict):
            raise MalformedBody("the JSON body must be an object of parameters")
        return {str(k): flat_value(v) for k, v in obj.items()}
    except ValueError as exc:
        raise MalformedBody(f"the JSON body cannot be parsed: {exc.args[0]}") from None
    except RecursionError:
        raise MalformedBody("the JSON body is nested too deep") from None


INT64 = range(-(1 << 63), 1 << 64)  # what msgpack can carry as a number


def flat_value(value: Any) -> Any:
    """JSON scalars stay as sent (mobile SDKs send numbers and booleans); nested values travel
    as their JSON text, and integers beyond 64 bits as their digits, rather than being
    refused."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, int) and not isinstance(value, bool) and value not in INT64:
        return str(value)
    return value


async def decode_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    async def stream() -> AsyncIterator[bytes]:
        yield body

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise MalformedBody("the multipart body has no boundary")
    if b"--" + boundary + b"--" not in body:
        raise MalformedBody("the multipart body is truncated (no closing boundary)")
    parser = MultiPartParser(Headers({"content-type": content_type}), stream())
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise MalformedBody(f"the multipart body cannot be parsed: {exc.message}") from None
    # File parts are kept by their file name only: tracking parameters are text.
    return {k: v if isinstance(v, str) else (v.filename or "") for k, v in form.multi_items()}


# The one line break of a push payload (what the SDKs send). A "\r" before it is JSON
# whitespace; every other break str.splitlines() knows (\x0b, \x1c, \x85, \u2028, ...) is
# part of a line, which then is not JSON (or is, inside a string).
LINE_BREAK = "\n"


def count_push_lines(payload: str) -> int:
    """How many lines ``push_lines`` makes of ``payload``, without making them."""
    if not payload:
        return 0
    return payload.count(LINE_BREAK) + (not payload.endswith(LINE_BREAK))


def push_lines(payload: str) -> list[str]:
    """The lines of a push payload: ``LINE_BREAK`` ends a line (the last needs none)."""
    lines = payload.split(LINE_BREAK)
    if lines[-1] == "":
        lines.pop()
    return lines


def decode_push_lines(payload: str) -> list[tuple[str, dict[str, Any]] | str]:
    """Lines of a /track/push payload: (endpoint, params), or an error message for a bad line."""
    lines: list[tuple[str, dict[str, Any]] | str] = []
    for number, line in enumerate(push_lines(payload), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            lines.append(f"line {number}: not JSON")
            continue
        except RecursionError:
            lines.append(f"line {number}: nested too deep")
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("params", {}), dict):
            lines.append(f"line {number}: expected an object with 'endpoint' and 'params'")
            continue
        try:
            params = valid_params({str(k): flat_value(v) for k, v in obj.get("params", {}).items()})
        except RecursionError:
            lines.append(f"line {number}: nested too deep")
            continue
        lines.append((str(obj.get("endpoint", Endpoint.CE)), params))
    return lines
