"""The one record of the ``warnings`` topic: the pipeline changed or refused what a sender sent.

Every service writes them (the gateway, the processors, the triggers service), each for what it
decided, so that an operator reads one topic (``trackpipe warnings``, the dashboard) instead of
every service's log. A warning names its project (the name sent, for an unknown one), its
``kind`` (``Kind``), a ``reason`` in words, a ``sample`` of the input (cut to
``SAMPLE_CHARS``, every character that could steer a terminal or a page escaped), the event id
when there is one (the ``X-Event-Id`` the sender got) and when it was decided. ``unrecorded``
counts the warnings of the same project and kind its service left out just before this one
(``runtime.warning_budget``: a flood makes counts, not records).

JSON (msgspec, fields in a fixed order), keyed by project, so that one project's warnings share
a partition and its reader reads that partition alone. Pure.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

import msgspec

SAMPLE_CHARS = 300


class Kind(StrEnum):
    TIMESTAMP_REPLACED = "timestamp_replaced"  # unusable: the receipt time is the event time
    TIMESTAMP_FUTURE = "timestamp_future"      # kept, flagged future: hidden until it happens
    MERGE_REFUSED = "merge_refused"            # two ids (or emails) met; an email owned by an id
    DEAD_LETTER = "dead_letter"                # a record or a firing went to the dead letters
    WEBHOOK_FAILED = "webhook_failed"          # a webhook given up and dead-lettered
    OVER_QUOTA = "over_quota"                  # 402: logged, but triggers do not run
    EXCLUDED = "excluded"                      # 403: an excluded IP, user agent or visitor
    UNKNOWN_PROJECT = "unknown_project"        # 403: no such project (or none named)
    UNAUTHENTICATED = "unauthenticated"        # 401: secure tracking without the secret


class Service(StrEnum):
    GATEWAY = "gateway"
    PROCESSORS = "processors"
    TRIGGERS = "triggers"


class IngestionWarning(msgspec.Struct, frozen=True, kw_only=True):
    project: str
    kind: str
    reason: str
    at_ms: int
    service: str
    event_id: str = ""
    sample: str = ""
    unrecorded: int = 0

    @property
    def key(self) -> bytes:
        return self.project.encode()

    def to_json(self) -> bytes:
        return _encode(self)

    @classmethod
    def from_json(cls, data: bytes) -> IngestionWarning:
        return _decode(data)

    def shown(self) -> dict[str, Any]:
        return msgspec.structs.asdict(self)


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(IngestionWarning).decode

# C0 and C1 controls, DEL, the bidirectional formatting characters, the line and paragraph
# separators and lone surrogates: what could steer a terminal or reorder a page's text.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")


def sample(text: str, limit: int = SAMPLE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (``…`` and the original length say it was) with
    every character that could steer a terminal or a page written as ``\\xNN``/``\\uNNNN``."""
    cut = text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"
    return _UNSAFE.sub(_escaped, cut)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# A sent ``ip`` parameter (a server-side SDK's visitor address): a sample never carries it, so
# that a project's --ip-anonymize holds in its warnings too and none needs it to be read.
_IP_PARAM = re.compile(r"(?:^|(?<=[&;]))ip=[^&;]*")
WITHHELD = "ip=(withheld)"


def request_sample(endpoint: str, query: bytes | str, form: dict[str, Any] | None,
                   limit: int = SAMPLE_CHARS) -> str:
    """What a tracking request sent, as a sample: its endpoint, its query and its body's
    fields (``k=v`` pairs) but a sent ``ip``'s value, cut to ``limit``; a large body costs no
    more than the cut."""
    head = query[:limit + 1] if len(query) > limit else query  # (a long query is cut anyway)
    parts = [endpoint] if endpoint else []
    text = head.decode("utf-8", "replace") if isinstance(head, bytes) else head
    parts.append(_IP_PARAM.sub(WITHHELD, text))
    size = sum(map(len, parts))
    for name, value in (form or {}).items():
        if size > limit:
            break
        parts.append(WITHHELD if name == "ip" else f"{name}={str(value)[:limit]}")
        size += len(parts[-1])
    text = " ".join(part for part in parts if part)
    return sample(text, limit) if size <= limit else sample(text[:limit], limit) + "…"
