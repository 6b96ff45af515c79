"""Reading the few parameters the gateway decides on, and decoding request bodies.

The gateway does not parse every parameter (the processors do, from the raw record): it scans
the query string for the names in ``DECISION_PARAMS`` only, decoding just those. Bodies are
decoded in full because they must travel as parameters anyway.

Pure apart from the (async) multipart parser: bytes in, dicts out, ``MalformedBody`` for a body that
cannot be parsed at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers
from starlette.formparsers import MultiPartException, MultiPartParser

from gateway.errors import MalformedBody

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
        return await decode_multipart(content_type, body)
    if media == "application/json" or media.endswith("+json"):
        parse = decode_json
    else:  # form encoding is the default: beacons and old SDKs often send no content type
        parse = decode_form
    return await asyncio.to_thread(parse, body) if off_loop else parse(body)


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


def decode_push_lines(payload: str) -> list[tuple[str, dict[str, Any]] | str]:
    """Lines of a /track/push payload: (endpoint, params), or an error message for a bad line."""
    lines: list[tuple[str, dict[str, Any]] | str] = []
    for number, line in enumerate(payload.splitlines(), start=1):
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
            params = {str(k): flat_value(v) for k, v in obj.get("params", {}).items()}
        except RecursionError:
            lines.append(f"line {number}: nested too deep")
            continue
        lines.append((str(obj.get("endpoint", "ce")), params))
    return lines
