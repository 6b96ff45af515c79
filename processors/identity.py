"""Identity resolution decisions (SPEC §3): which profile an action belongs to. Pure.

Kafka partitions by key, and one person's requests do not all carry the same identifiers, so
resolution is a conversation between two kinds of partition (docs/architecture.md):

- the **visitor** partition (raw records, keyed by visitor key: the cookie, else the highest
  identifier) keeps ``VisitorState``: the profile this device belongs to and the id/email it
  was last seen with. ``resolve_visitor`` stamps the action with that profile at once and says
  which ``Link`` to send when the request carries a higher identifier than the key;
- the **identity** partition (links, keyed by identifier) keeps ``IdentityState``: the profile
  that owns the identifier. ``resolve_link`` answers with the profile that wins, and says
  which merge (if any) that implies; the visitor partition then rebinds.

Rules: ``cv_id`` > ``cv_email`` > ``cookie``. A device seen with an email or id joins the
profile that owns it, with its earlier anonymous actions (a merge). Two ids never merge, nor
two emails: a device that shows a different id (or, without ids, a different email) than
before has changed hands, and switches profile without a merge. An email seen with an id joins
the id's profile unless the email's profile already has another id.

Profile ids are derived from the identifier that first created them, so a replay of the same
records makes the same decisions.
"""

from __future__ import annotations

import hashlib

import msgspec

from schemas.identifiers import Identifiers
from schemas.identity import Link, Merge

__all__ = ["IdentityState", "Link", "LinkDecision", "Merge", "VisitorDecision", "VisitorState",
           "profile_id", "rebind", "resolve_link", "resolve_visitor"]


def profile_id(project: str, identifier_key: str) -> str:
    """The id of the profile an identifier creates (``cookie:c``, ``id:u``, ``email:e``)."""
    return "p" + hashlib.sha1(f"{project}\n{identifier_key}".encode()).hexdigest()[:23]


class VisitorState(msgspec.Struct, frozen=True, gc=False):
    profile: str
    id: str | None = None
    email: str | None = None


class VisitorDecision(msgspec.Struct, frozen=True, gc=False):
    profile: str             # stamp the action with this profile now
    state: VisitorState      # the visitor's new state
    links: tuple[Link, ...] = ()
    switched: bool = False   # the device changed hands (no merge)


def resolve_visitor(project: str, visitor_key: str, state: VisitorState | None,
                    ids: Identifiers, at_ms: int = 0) -> VisitorDecision:
    profile = state.profile if state else profile_id(project, visitor_key)
    known_id = state.id if state else None
    known_email = state.email if state else None
    switched = False
    if ids.id and known_id and ids.id != known_id:
        switched, profile = True, profile_id(project, "id:" + ids.id)
        known_email = None
    elif not ids.id and not known_id and ids.email and known_email and ids.email != known_email:
        switched, profile = True, profile_id(project, "email:" + ids.email)
    new_id = ids.id or (None if switched else known_id)
    new_email = ids.email or (None if switched else known_email)
    links = []
    if ids.id and (ids.id != known_id or switched):
        links.append(Link("id:" + ids.id, profile, visitor_key, True, project, at_ms))
    if ids.email and (ids.email != known_email or switched or (ids.id and ids.id != known_id)):
        links.append(Link("email:" + ids.email, profile, visitor_key, bool(new_id), project,
                          at_ms))
    return VisitorDecision(profile, VisitorState(profile, new_id, new_email), tuple(links),
                           switched)


class IdentityState(msgspec.Struct, frozen=True, gc=False):
    profile: str
    has_id: bool = False


class LinkDecision(msgspec.Struct, frozen=True, gc=False):
    state: IdentityState     # the identifier's new owner
    answer: str              # the profile the asking visitor belongs to from now on
    merge: Merge | None = None
    refused: str | None = None  # why two profiles that met were not merged


def resolve_link(state: IdentityState | None, link: Link) -> LinkDecision:
    is_id = link.identifier.startswith("id:")
    if state is None:
        return LinkDecision(IdentityState(link.candidate, link.has_id or is_id), link.candidate)
    if state.profile == link.candidate:
        return LinkDecision(IdentityState(state.profile, state.has_id or link.has_id),
                            state.profile)
    if not is_id and link.has_id:
        if state.has_id:  # the email already belongs to someone with another id: never merge
            return LinkDecision(state, link.candidate, refused=(
                f"{link.identifier} belongs to a profile with another id: not merged"))
        # an id-less email profile joins the id's profile
        return LinkDecision(IdentityState(link.candidate, True), link.candidate,
                            _merge(state.profile, link.candidate, link))
    return LinkDecision(state, state.profile, _merge(link.candidate, state.profile, link))


def _merge(source: str, into: str, link: Link) -> Merge:
    return Merge(source, into, link.identifier, link.project, link.visitor_key, link.at_ms)


def rebind(state: VisitorState | None, link: Link, answer: str) -> VisitorState | None:
    """The visitor's state after an answer; None when a newer decision made it moot."""
    if state is None or state.profile != link.candidate or answer == link.candidate:
        return None
    return VisitorState(answer, state.id, state.email)
