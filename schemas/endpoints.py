"""The tracking API's endpoints, as the gateway routes them, a raw record names its own and an
action record's ``type`` says which made it. Pure."""

from __future__ import annotations

from enum import StrEnum


class Endpoint(StrEnum):
    CE = "ce"              # an action
    IDENTIFY = "identify"  # visitor properties, no action
    UPDATE = "update"      # changes an action the visitor sent (by its client id ``idptnc``)
    PING = "ping"          # keeps the visit alive
    PUSH = "push"          # a batch of the others: never a record of its own


RECORDED = frozenset(Endpoint) - {Endpoint.PUSH}  # what a raw record can be
