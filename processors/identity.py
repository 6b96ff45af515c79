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
from dataclasses import dataclass

from schemas.identifiers import Identifiers


def profile_id(project: str, identifier_key: str) -> str:
    """The id of the profile an identifier creates (``cookie:c``, ``id:u``, ``email:e``)."""
    return "p" + hashlib.sha1(f"{project}\n{identifier_key}".encode()).hexdigest()[:23]


@dataclass(frozen=True, slots=True)
class VisitorState:
    profile: str
    id: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Link:
    """Ask the identifier's partition who owns it, offering ``candidate``."""
    identifier: str          # "id:u" or "email:e"
    candidate: str
    visitor_key: str
    has_id: bool = False     # the candidate profile has an id (for email links)


@dataclass(frozen=True, slots=True)
class VisitorDecision:
    profile: str             # stamp the action with this profile now
    state: VisitorState      # the visitor's new state
    links: tuple[Link, ...] = ()
    switched: bool = False   # the device changed hands (no merge)


def resolve_visitor(project: str, visitor_key: str, state: VisitorState | None,
                    ids: Identifiers) -> VisitorDecision:
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
        links.append(Link("id:" + ids.id, profile, visitor_key, has_id=True))
    if ids.email and (ids.email != known_email or switched or (ids.id and ids.id != known_id)):
        links.append(Link("email:" + ids.email, profile, visitor_key, has_id=bool(new_id)))
    return VisitorDecision(profile, VisitorState(profile, new_id, new_email), tuple(links),
                           switched)


@dataclass(frozen=True, slots=True)
class IdentityState:
    profile: str
    has_id: bool = False


@dataclass(frozen=True, slots=True)
class Merge:
    source: str              # the profile that is folded in
    into: str
    identifier: str          # what caused it


@dataclass(frozen=True, slots=True)
class LinkDecision:
    state: IdentityState     # the identifier's new owner
    answer: str              # the profile the asking visitor belongs to from now on
    merge: Merge | None = None


def resolve_link(state: IdentityState | None, link: Link) -> LinkDecision:
    is_id = link.identifier.startswith("id:")
    if state is None:
        return LinkDecision(IdentityState(link.candidate, link.has_id or is_id), link.candidate)
    if state.profile == link.candidate:
        return LinkDecision(IdentityState(state.profile, state.has_id or link.has_id),
                            state.profile)
    if not is_id and link.has_id:
        if state.has_id:  # the email already belongs to someone with another id: never merge
            return LinkDecision(state, link.candidate)
        # an id-less email profile joins the id's profile
        return LinkDecision(IdentityState(link.candidate, True), link.candidate,
                            Merge(state.profile, link.candidate, link.identifier))
    return LinkDecision(state, state.profile,
                        Merge(link.candidate, state.profile, link.identifier))


def rebind(state: VisitorState | None, link: Link, answer: str) -> VisitorState | None:
    """The visitor's state after an answer; None when a newer decision made it moot."""
    if state is None or state.profile != link.candidate or answer == link.candidate:
        return None
    return VisitorState(answer, state.id, state.email)
