"""The gateway's HTTP/1.1 protocol: uvicorn's httptools protocol with the gateway's limits.

Two limits belong below the ASGI application, where uvicorn leaves them open:

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

The limits come from the settings of the process (read once, when the first connection is
made: uvicorn builds protocols itself, one per connection).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from trackpipe.settings import Settings

URL_TOO_LONG = "trackpipe.url_too_long"  # scope["extensions"] key: the target's length
PARSER_MAX_URL_BYTES = 65_535  # httptools.parse_url refuses anything longer


@functools.lru_cache(maxsize=1)
def _limits() -> tuple[int, float]:
    settings = Settings.from_env()
    return (min(settings.max_url_bytes, PARSER_MAX_URL_BYTES),
            settings.header_timeout_ms / 1000)


class GatewayProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_url, self._header_timeout_s = _limits()
        self._url_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes <= self._max_url:
            super().on_url(url)

    def on_headers_complete(self) -> None:
        self._disarm()
        if self._url_bytes > self._max_url:
            self.url = b"/"  # what the parser can take; the extension says what it was
            self.scope["extensions"] = {URL_TOO_LONG: self._url_bytes}
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()  # the next request's headers, on a kept-alive connection

    def _arm(self) -> None:
        if self._header_timer is None and self._header_timeout_s > 0:
            self._header_timer = self.loop.call_later(self._header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose headers took over %.0f s",
                             self._header_timeout_s)
            self.transport.close()
