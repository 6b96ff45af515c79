"""Appending to the files the processors keep (day logs, the journal): whole or not at all.

An unbuffered write may write fewer bytes than asked (a full disk); passing over that would
leave half a line that corrupts the next one. ``write_all`` writes everything or raises
``OSError`` with the file cut back to where it was, so a retried write starts clean.
"""

from __future__ import annotations

import logging
from typing import IO

log = logging.getLogger(__name__)


def write_all(f: IO[bytes], data: bytes, start: int) -> None:
    """Write ``data`` at the end of ``f`` (which is ``start`` bytes long) whole, or raise
    OSError leaving ``f`` at ``start`` bytes."""
    view = memoryview(data)
    try:
        while view:
            written = f.write(view)
            if not written:
                raise OSError("the disk took none of the bytes")
            view = view[written:]
    except OSError:
        try:
            f.truncate(start)
        except OSError:
            log.exception("could not cut a partial write off %s", getattr(f, "name", f))
        raise
