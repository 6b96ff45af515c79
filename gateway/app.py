"""The tracking endpoints of SPEC §1 as a plain ASGI handler.

The hot path is kept below the framework on purpose (docs/benchmarks.md): a FastAPI route with
``Request.query_params`` costs about four fifths of the throughput before any work is done.
This handler reads the few headers it needs in one pass, scans the query for the decision
parameters only, and hands the raw bytes on in the raw record. The decisions themselves live
in pure modules (params, projects, addresses, responses); this file only moves data between
them, the publisher and the socket.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import parse_qs

from gateway.addresses import Network, client_ip
from gateway.errors import (
    BodyTooLarge,
    GatewayError,
    MalformedBody,
    NotAllowed,
    RegistryNotLoaded,
    RequestTimeout,
    TooLarge,
    UrlTooLong,
)
from gateway.expansion import PushBound, estimate, shared_bytes
from gateway.ids import EventIds
from gateway.jsactions import JsQueue
from gateway.metrics import Metrics
from gateway.params import (
    count_push_lines,
    decode_body,
    decode_push_lines,
    project_param,
    scan_query,
)
from gateway.projects import ProjectTable, admit
from gateway.responses import (
    OVER_QUOTA,
    OVER_QUOTA_MESSAGE,
    Reply,
    render,
    response_format,
    script,
    success,
)
from gateway.warnings_buffer import WarningBuffer
from runtime.settings import Settings
from schemas.endpoints import RECORDED, Endpoint
from schemas.identifiers import identifiers_of
from schemas.quota import QuotaState, month_of
from schemas.raw import RawRecord
from schemas.topics import MAX_RECORD_BYTES
from schemas.warning import Kind, request_sample, sample

TRACK_PATHS = {
    "/track/ce": Endpoint.CE, "/track/identify": Endpoint.IDENTIFY,
    "/track/update": Endpoint.UPDATE, "/track/ping": Endpoint.PING, "/ping": Endpoint.PING,
    "/track/push": Endpoint.PUSH,
}
TP_ENDPOINTS = frozenset(Endpoint)
WANTED_HEADERS = frozenset({b"user-agent", b"referer", b"accept-language", b"authorization",
                            b"content-type", b"content-length", b"x-forwarded-for"})
CORS = [(b"access-control-allow-origin", b"*"), (b"cache-control", b"no-store")]
PREFLIGHT = CORS + [(b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                    (b"access-control-allow-headers", b"Content-Type, Authorization"),
                    (b"content-length", b"0")]
# A body over the limit is still read (and dropped) up to this much before the 413 goes out,
# so that a plain client, which sends its whole body before it reads, sees the answer instead
# of a connection reset; past it the connection is closed as it is.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
# A handler built without settings (tests, benchmarks) takes their documented defaults.
DEFAULTS = Settings()
DEFAULT_PUSH_BOUND = PushBound(DEFAULTS.max_push_expansion, DEFAULTS.push_expansion_floor_bytes)

Publish = Callable[[bytes, bytes], Awaitable[int]]
Forget = Callable[[list[str]], None]


class ClientGone(Exception):
    """The sender closed the connection before its body arrived: nothing to answer."""


def route(path: str) -> tuple[str, str] | None:
    """(endpoint, project from the path or '') for a tracking path, else None."""
    path = path.rstrip("/")
    endpoint = TRACK_PATHS.get(path)
    if endpoint is not None:
        return endpoint, ""
    if path.startswith("/track/tp/"):
        parts = path.split("/")
        if len(parts) == 5 and parts[3] and parts[4] in TP_ENDPOINTS:
            return parts[4], parts[3]
    return None


class TrackingApp:
    def __init__(self, projects: ProjectTable, publish: Publish, metrics: Metrics, *,
                 max_url_bytes: int, max_body_bytes: int,
                 max_push_lines: int = DEFAULTS.max_push_lines,
                 push_bound: PushBound = DEFAULT_PUSH_BOUND,
                 body_timeout_ms: int = DEFAULTS.body_timeout_ms,
                 trusted_proxies: tuple[Network, ...] = (),
                 quotas: Mapping[str, QuotaState] | None = None,
                 js_actions: JsQueue | None = None, forget_js: Forget | None = None,
                 warnings: WarningBuffer | None = None) -> None:
        self.projects = projects
        # refusals and 402s, as ingestion warnings (held here, sent by the gateway's task)
        self.warnings = warnings if warnings is not None else WarningBuffer("warnings", 1)
        self.js_actions = JsQueue(time.monotonic) if js_actions is None else js_actions
        self.forget_js = forget_js or (lambda keys: None)
        self.quotas = {} if quotas is None else quotas
        self.publish = publish
        self.metrics = metrics
        self.max_url_bytes = max_url_bytes
        self.max_body_bytes = max_body_bytes
        self.max_push_lines = max_push_lines
        self.push_bound = push_bound
        self.body_timeout_s = body_timeout_ms / 1000
        self.trusted = trusted_proxies
        self.ids = EventIds()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any,
                       endpoint: str, path_project: str) -> None:
        method = scope["method"]
        if method == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": PREFLIGHT})
            await send({"type": "http.response.body", "body": b""})
            return
        event_id, now_ms = self.ids.next()
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in WANTED_HEADERS:
                headers[name] = value
        fmt = "js"
        extra: dict[str, int] = {}
        try:
            query = scope["query_string"]
            if len(scope.get("raw_path") or b"") + len(query) > self.max_url_bytes:
                raise UrlTooLong(f"the URL is over {self.max_url_bytes} bytes")
            facts = scan_query(query.decode("utf-8", "replace"))
            fmt = response_format(facts.get("response"))
            form: dict[str, Any] = {}
            body = b""
            if method == "POST":
                body = await self._read_body(receive, headers)
                content_type = headers.get(b"content-type", b"").decode("latin-1")
                form = await decode_body(content_type, body, off_loop=len(body) > OFF_LOOP_BYTES)
            elif method not in ("GET", "HEAD"):
                raise MalformedBody(f"method {method} is not supported: use GET or POST")
            params = {**facts, **form} if form else facts
            if "response" in form:
                fmt = response_format(form["response"])
            peer = (scope.get("client") or ("",))[0]
            ip = client_ip(peer, headers.get(b"x-forwarded-for", b"").decode("latin-1"),
                           str(params.get("ip") or ""), self.trusted)
            queued = b""
            if endpoint == Endpoint.PUSH:
                size = (len(scope.get("raw_path") or b"") + len(query) + len(body)
                        + sum(len(name) + len(value) for name, value in scope["headers"]))
                status, extra = await self._push(event_id, now_ms, path_project, query, facts,
                                                 form, ip, headers, size)
            else:
                status, record = await self._track(event_id, now_ms, endpoint, path_project,
                                                   query, params, form, ip, headers)
                if fmt == "js":
                    taken, queued = self.js_actions.take(record.project, record.visitor_key)
                    if taken:
                        self.forget_js(taken)
            if queued:
                reply = script(status, queued)
            else:
                reply = success(fmt, status) if not extra else render(fmt, status, **extra)
            extra_headers = CORS
        except ClientGone:
            return
        except GatewayError as exc:
            await self.refuse(send, exc, endpoint, event_id, fmt, head=method == "HEAD")
            return
        self.metrics.count(endpoint, reply.status)
        await send_reply(send, reply, event_id, extra_headers, head=method == "HEAD")

    async def refuse(self, send: Any, exc: GatewayError, endpoint: str, event_id: str,
                     fmt: str = "js", head: bool = False) -> None:
        """Answer a refused request: the status and headers of ``exc``, its message in
        ``fmt``."""
        reply = render(fmt, exc.status, exc.message)
        self.metrics.count(endpoint, reply.status)
        await send_reply(send, reply, event_id, [*CORS, *exc.headers], head=head)

    async def _track(self, event_id: str, now_ms: int, endpoint: str, path_project: str,
                     query: bytes, params: dict[str, Any], form: dict[str, Any], ip: str,
                     headers: dict[bytes, bytes]) -> tuple[int, RawRecord]:
        record = self._admit(event_id, now_ms, endpoint, path_project, query, params, form, ip,
                             headers)
        status = await self.publish(record.kafka_key(), encoded(record))
        return (OVER_QUOTA if record.over_quota else status), record

    def _admit(self, event_id: str, now_ms: int, endpoint: str, path_project: str,
               query: bytes, params: dict[str, Any], form: dict[str, Any], ip: str,
               headers: dict[bytes, bytes]) -> RawRecord:
        if not self.projects.loaded:  # a 403 now would tell senders a real project is unknown
            raise RegistryNotLoaded()
        user_agent = headers.get(b"user-agent", b"").decode("latin-1")
        ids = identifiers_of(params)
        named = path_project or project_param(params)
        found = self.projects.find(named)
        try:
            project = admit(found, params, ids, ip, user_agent,
                            headers.get(b"authorization", b"").decode("latin-1"))
        except NotAllowed as exc:
            self.warnings.note(found.name if found is not None else sample(named, 128),
                               exc.warning, exc.message, event_id,
                               lambda: request_sample(endpoint, query, form))
            raise
        quota = self.quotas.get(project.name)
        over_quota = quota is not None and quota.over_in(month_of(now_ms))
        if over_quota:
            self.warnings.note(project.name, Kind.OVER_QUOTA, OVER_QUOTA_MESSAGE, event_id,
                               lambda: request_sample(endpoint, query, form))
        return self._record(event_id, now_ms, endpoint, project.name, query, form, ip, headers,
                            ids.visitor_key, over_quota=over_quota,
                            anonymize_ip=project.record.ip_anonymize,
                            locate=project.record.location)

    @staticmethod
    def _record(event_id: str, now_ms: int, endpoint: str, project: str, query: bytes,
                form: dict[str, Any], ip: str, headers: dict[bytes, bytes], visitor_key: str,
                over_quota: bool = False, anonymize_ip: bool = False,
                locate: bool = True) -> RawRecord:
        """The record of an admitted request; it carries its project's address settings as
        they were (``schemas.raw``: a worker may not have read them yet)."""
        return RawRecord(
            over_quota=over_quota, id=event_id, received_ms=now_ms, endpoint=endpoint,
            project=project, ip=ip,
            user_agent=headers.get(b"user-agent", b"").decode("latin-1"),
            referer=headers.get(b"referer", b"").decode("latin-1"),
            language=headers.get(b"accept-language", b"").decode("latin-1"),
            query=query, form=form, visitor_key=visitor_key, anonymize_ip=anonymize_ip,
            locate=locate)

    async def _push(self, batch_id: str, now_ms: int, path_project: str, query: bytes,
                    facts: dict[str, str], form: dict[str, Any], ip: str,
                    headers: dict[bytes, bytes], request_bytes: int
                    ) -> tuple[int, dict[str, int]]:
        """Each line of a push payload is one request; the batch succeeds if any line does.

        Its line count and what its records may add up to (``gateway.expansion``) are checked
        before a single line is decoded, so a refused push costs no per-line work."""
        outer = {k: v for k, v in form.items() if k != "payload"}
        payload = form.get("payload")
        if payload is None:
            payload = parse_qs(query.decode("utf-8", "replace")).get("payload", [""])[-1]
        payload = str(payload)
        count = count_push_lines(payload)
        if count > self.max_push_lines:
            raise TooLarge(f"a push holds at most {self.max_push_lines} lines "
                           f"(TRACKPIPE_MAX_PUSH_LINES; lines end with \\n); this one has "
                           f"{count}")
        empty_line = self._record(f"{batch_id}.{count}", now_ms, Endpoint.IDENTIFY, "", query,
                                  outer, ip, headers, "")
        per_line = shared_bytes(empty_line, (*facts.values(), *outer.values()))
        refusal = self.push_bound.refusal(
            estimate(count, per_line, len(payload.encode())), request_bytes, exact=False)
        if refusal:
            raise TooLarge(refusal)
        lines = (decode_push_lines(payload) if len(payload) < OFF_LOOP_BYTES
                 else await asyncio.to_thread(decode_push_lines, payload))
        if not lines:
            raise MalformedBody("push needs a 'payload' of JSON lines")
        encoded_lines: list[tuple[bytes, bytes]] = []  # (key, value): no record kept whole
        total = 0
        over_quota = False
        refusals: list[GatewayError] = []
        for number, line in enumerate(lines, start=1):
            if isinstance(line, str) or line[0] not in RECORDED:
                refusals.append(MalformedBody(line if isinstance(line, str)
                                              else f"line {number}: unknown endpoint"))
                continue
            endpoint, line_params = line
            line_form = {**outer, **line_params}
            params = {**facts, **line_form}
            try:
                record = self._admit(f"{batch_id}.{number}", now_ms, endpoint, path_project,
                                     query, params, line_form, ip, headers)
            except GatewayError as exc:
                refusals.append(exc)
                continue
            value = encoded(record)
            total += len(value)
            refusal = self.push_bound.refusal(total, request_bytes, exact=True)
            if refusal:  # a guard: the estimate above is an upper bound of the total
                raise TooLarge(refusal)
            encoded_lines.append((record.kafka_key(), value))
            over_quota = over_quota or record.over_quota
        if not encoded_lines:
            raise refusals[0]
        statuses = await asyncio.gather(*(self.publish(key, value)
                                          for key, value in encoded_lines),
                                        return_exceptions=True)
        failures = [s for s in statuses if isinstance(s, BaseException)]
        if failures:  # a spool failure: some lines may be in Kafka, the sender must retry all
            raise failures[0]
        if over_quota:
            statuses.append(OVER_QUOTA)
        return max(statuses), {"accepted": len(encoded_lines), "rejected": len(refusals)}

    async def _read_body(self, receive: Any, headers: dict[bytes, bytes]) -> bytes:
        """The body, within ``body_timeout_ms`` (408) and ``max_body_bytes`` (413). A body over
        the limit is read to its end and dropped (up to ``MAX_DRAIN_BYTES``) before the 413,
        so the client reads the answer instead of a reset connection."""
        declared = headers.get(b"content-length", b"")
        too_large = declared.isdigit() and int(declared) > self.max_body_bytes
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ClientGone()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    too_large = too_large or size > self.max_body_bytes
                    if not too_large:
                        chunks.append(chunk)
                    if not message.get("more_body") or size > MAX_DRAIN_BYTES:
                        break
        except TimeoutError:
            raise RequestTimeout(f"the body did not arrive within {self.body_timeout_s:.0f} s"
                                 ) from None
        if too_large:
            raise BodyTooLarge(f"the body is over {self.max_body_bytes} bytes")
        return b"".join(chunks)


OFF_LOOP_BYTES = 64 * 1024  # bodies and pushes this large are parsed in a thread


def encoded(record: RawRecord) -> bytes:
    """The record's bytes, or 413 when Kafka could not take it (``MAX_RECORD_BYTES``)."""
    value = record.to_bytes()
    if len(value) > MAX_RECORD_BYTES:
        raise TooLarge(f"the request makes a {len(value)}-byte record; the most Kafka takes is "
                       f"{MAX_RECORD_BYTES} bytes")
    return value


async def send_reply(send: Any, reply: Reply, event_id: str,
                     extra_headers: list[tuple[bytes, bytes]], head: bool = False) -> None:
    await send({"type": "http.response.start", "status": reply.status, "headers": [
        (b"content-type", reply.content_type),
        (b"content-length", str(len(reply.body)).encode()),
        (b"x-event-id", event_id.encode()),
        *extra_headers,
    ]})
    await send({"type": "http.response.body", "body": b"" if head else reply.body})
