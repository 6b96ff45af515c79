"""Time-ordered event ids (UUIDv7, RFC 9562) without a syscall per id.

48 bits of unix ms, then a 12-bit counter that orders ids made within one ms, then 62 bits
that are random per process plus a running sequence, so that ids stay unique across gateway
processes and across counter overflow within one millisecond.
"""

from __future__ import annotations

import os
import time


class EventIds:
    def __init__(self, clock_ns=time.time_ns) -> None:
        self._clock_ns = clock_ns
        self._last_ms = 0
        self._counter = 0
        self._seq = int.from_bytes(os.urandom(8)) & ((1 << 62) - 1)

    def next(self) -> tuple[str, int]:
        """A new id and the unix ms it was made at (the receipt time)."""
        now_ms = self._clock_ns() // 1_000_000
        if now_ms > self._last_ms:
            self._last_ms, self._counter = now_ms, 0
        else:  # same ms, or the clock stepped back: stay ordered
            self._counter += 1
            if self._counter > 0xFFF:
                self._last_ms, self._counter = self._last_ms + 1, 0
        self._seq = (self._seq + 1) & ((1 << 62) - 1)
        value = ((self._last_ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | self._counter << 64
                 | 0b10 << 62 | self._seq)
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", now_ms
