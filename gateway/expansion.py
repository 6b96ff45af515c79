"""How much a ``/track/push`` may expand to, counted in the bytes of the raw records it makes.

Every line of a push becomes one raw record, and each carries, besides the line's own
parameters, the request's query, user agent, referer, language and the outer form fields: a
209 KB push of 1,000 ``{}`` lines beside one 200 KB form field would make 191 MB. So a push may
make at most ``max(multiple × its own bytes, floor_bytes)`` of encoded records, its own bytes
being its URL, headers and body as received (``PushBound``).

It is checked twice, so that nothing is built for a push that is then refused: before any line
is decoded, against ``estimate`` (an upper bound of the encoded total, from the line count and
a record of the request with no line in it); after each record is encoded, against the running
total (a guard: it cannot be passed once the estimate was).

Pure: numbers and records in, numbers out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.identifiers import MAX_IDENTIFIER_CHARS
from schemas.raw import RawRecord

LINE_SLACK_BYTES = 160
"""What a line's record may hold beyond the request's record with no line (whose event id and
endpoint are the longest a line gets) and its own parameters: the project a line names (at
most 128 bytes), the ``cookie:`` of its visitor key, msgpack's longer length prefixes."""
OWN_GROWTH = 6
"""How many bytes of record one byte of a line's text can become: a nested number is written
back as Python writes it (``1e15,`` becomes ``1000000000000000.0,``, 3.8 times), and an
identifier is copied once more into the visitor key (``{"cookie":[1e15,...]}`` makes 4.9
times its text); a string gains at most its length prefix for its two quotes. The settings
refuse a ``max_push_expansion`` this estimate alone would exceed."""
MAX_KEY_BYTES = len("cookie:") + 4 * MAX_IDENTIFIER_CHARS  # a visitor key, as UTF-8


@dataclass(frozen=True, slots=True)
class PushBound:
    """A push may make at most ``max(multiple × request_bytes, floor_bytes)`` of records."""

    multiple: int
    floor_bytes: int

    def limit(self, request_bytes: int) -> int:
        return max(self.multiple * request_bytes, self.floor_bytes)

    def refusal(self, records_bytes: int, request_bytes: int, *, exact: bool) -> str | None:
        """Why a push that makes ``records_bytes`` is refused, or None when it may go."""
        limit = self.limit(request_bytes)
        if records_bytes <= limit:
            return None
        made = "makes" if exact else "would make up to"
        return (f"this push {made} {records_bytes} bytes of records (each line carries the "
                f"query, headers and outer form fields), over {limit}: {self.multiple} times "
                f"its own {request_bytes} bytes (TRACKPIPE_MAX_PUSH_EXPANSION) or "
                f"{self.floor_bytes} (TRACKPIPE_PUSH_EXPANSION_FLOOR_BYTES); send fewer lines "
                "per push, or move long fields into the lines")


def shared_bytes(empty_line: RawRecord, shared_values: Iterable[object]) -> int:
    """Most bytes any line's record holds beyond what its own text becomes.

    ``empty_line`` is the record of the request with no line's parameters in it (the outer
    form fields only, the longest event id and endpoint a line gets). A line's visitor key may
    come from a value it does not carry itself (the query's or an outer field's cookie):
    ``shared_values`` are those values, the key is at most the longest of them (an email's
    lower case can be half as long again in UTF-8) and never more than ``MAX_KEY_BYTES``.
    """
    longest = max((len(str(v).encode()) for v in shared_values), default=0)
    key = min(len("cookie:") + 2 * longest, MAX_KEY_BYTES)
    return len(empty_line.to_bytes()) + LINE_SLACK_BYTES + key


def estimate(lines: int, per_line_bytes: int, payload_bytes: int) -> int:
    """An upper bound of the encoded records of a push of ``lines`` lines whose payload is
    ``payload_bytes`` of UTF-8 and whose every line copies ``per_line_bytes`` (``shared_bytes``)."""
    return lines * per_line_bytes + OWN_GROWTH * payload_bytes
