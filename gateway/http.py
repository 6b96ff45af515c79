"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol with the gateway's limits.

Three limits belong below the ASGI application, where uvicorn leaves them open:

- **The request target.** httptools refuses a URL over 65,535 bytes with a bare 400 before
  any application sees it, and a long URL is held in memory while it arrives. Here the target
  is measured as it comes in and stops being kept past ``max_url_bytes`` (at most 65,535);
  such a request reaches the application as ``/`` with the ASGI scope extension
  ``URL_TOO_LONG``, which answers the contract's 414 (``gateway.main``).
- **Slow headers.** A client that opens connections and sends its headers a byte at a time
  (slowloris) would hold them forever: uvicorn times out only idle keep-alive connections.
  Every request's headers must be complete within ``header_timeout_ms`` of its first byte
  (or of the connection), else the connection is closed. The body has its own timeout in the
  handler (``body_timeout_ms``), and ``max_connections`` bounds what one process holds.
- **Header bytes and count.** Neither uvicorn nor httptools bounds them: httptools keeps a
  header's value whole until its line ends, uvicorn keeps every header, and one request with
  a gigabyte of headers was answered 202. Here the bytes of a request's head that are not its
  target are counted as they are fed to the parser, in pieces no larger than what is left of
  ``max_header_bytes``, so the parser never holds more than that (and one read, when a head or
  trailers begin in the read that ends a body); past it, or past ``max_header_count`` fields,
  the request gets 431 with the reason and the connection is closed. A chunked body's
  trailers count as headers of their request (past a limit there, the connection is closed:
  an answer may be under way). A count refusal stops the parser from a callback, so uvicorn
  logs it as an invalid request before the 431 goes out.

The limits come from the settings of the process (read once, when the first connection is
made: uvicorn builds protocols itself, one per connection); a test passes its own.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.responses import render
from runtime.settings import Settings

URL_TOO_LONG = "trackpipe.url_too_long"  # scope["extensions"] key: the target's length
PARSER_MAX_URL_BYTES = 65_535  # httptools.parse_url refuses anything longer
HEADERS_TOO_LARGE = 431


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_url_bytes: int
    header_timeout_s: float
    max_header_bytes: int
    max_header_count: int

    @classmethod
    def of(cls, settings: Settings) -> HeadLimits:
        return cls(max_url_bytes=min(settings.max_url_bytes, PARSER_MAX_URL_BYTES),
                   header_timeout_s=settings.header_timeout_ms / 1000,
                   max_header_bytes=settings.max_header_bytes,
                   max_header_count=settings.max_header_count)


@functools.lru_cache(maxsize=1)
def _limits() -> HeadLimits:
    return HeadLimits.of(Settings.from_env())


class TooManyHeaders(Exception):
    """Raised in a parser callback: the only way to stop httptools in the middle of a feed."""


class GatewayProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HeadLimits | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits or _limits()
        self._url_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        # What arrives now is a request's head (or a chunked body's trailers) while
        # _counting; _head_bytes are those of its bytes that are not the target.
        self._counting = True
        self._in_head = True
        self._head_bytes = 0
        self._content_bytes = 0  # target and body bytes the parser has handed on, ever
        self._header_count = 0
        self._refusal: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a head in pieces no larger than what is left of its limit."""
        limit = self.limits.max_header_bytes
        while data and not self.transport.is_closing():
            if not self._counting:  # a body: the handler bounds it
                super().data_received(data)
                return
            room = max(limit - self._head_bytes, 1)
            piece, data = data[:room], data[room:]
            content = self._content_bytes
            super().data_received(piece)
            if self._counting and not self.transport.is_closing():
                # (a piece that ended one head and began another counts whole: at most room)
                self._head_bytes += len(piece) - (self._content_bytes - content)
                if self._head_bytes > limit:
                    self._refuse(f"the request's headers are over {limit} bytes "
                                 "(TRACKPIPE_MAX_HEADER_BYTES)")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = 0
        self._head_bytes = self._header_count = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        self._content_bytes += len(url)
        if self._url_bytes <= self.limits.max_url_bytes:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_header_count:
            self._refusal = (f"the request has over {self.limits.max_header_count} header "
                             "fields (TRACKPIPE_MAX_HEADER_COUNT)")
            raise TooManyHeaders(self._refusal)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._counting = self._in_head = False
        if self._url_bytes > self.limits.max_url_bytes:
            self.url = b"/"  # what the parser can take; the extension says what it was
            self.scope["extensions"] = {URL_TOO_LONG: self._url_bytes}
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._counting, self._head_bytes = True, 0  # if it is the last chunk, trailers follow

    def on_body(self, body: bytes) -> None:
        self._counting = False
        self._content_bytes += len(body)
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self._counting = False

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._counting = self._in_head = True  # the next request's head
        self._head_bytes = self._header_count = 0

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error, which is how a callback stops the parser."""
        if self._refusal is None:
            super().send_400_response(msg)
        else:
            self._refuse(self._refusal)

    def _refuse(self, reason: str) -> None:
        """431 with ``reason``, unless a response may be under way, and close."""
        self.logger.info("refusing a request from %s: %s", self.client, reason)
        self._count_refusal()
        if self._in_head and (self.cycle is None or self.cycle.response_complete):
            reply = render("js", HEADERS_TOO_LARGE, reason)
            self.transport.write(b"".join([
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
                b"content-type: ", reply.content_type, b"\r\n",
                b"content-length: %d\r\n" % len(reply.body),
                b"access-control-allow-origin: *\r\nconnection: close\r\n\r\n",
                reply.body]))
        self.transport.close()

    def _count_refusal(self) -> None:
        """Tell the application (through any middleware uvicorn put around it) that a head
        was refused, so its metrics count the 431 as they count its own answers."""
        app = self.app
        while app is not None and not hasattr(app, "head_refused"):
            app = getattr(app, "app", None)
        if app is not None:
            app.head_refused()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's headers, on a kept-alive connection

    def _arm(self) -> None:
        if self._header_timer is None and self.limits.header_timeout_s > 0:
            self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose headers took over %.0f s",
                             self.limits.header_timeout_s)
            self.transport.close()
