"""Identity rules, checked decision by decision and as whole stories run through a small
in-memory model of the two partitions (every link answered in order)."""

import pytest

from processors.identity import (
    IdentityState,
    Link,
    Merge,
    VisitorState,
    profile_id,
    rebind,
    resolve_link,
    resolve_visitor,
)
from schemas.identifiers import Identifiers

P = "shop.example"


def pid(key):
    return profile_id(P, key)


class Model:
    """Visitor and identity tables with links delivered at once, merges followed on read."""

    def __init__(self):
        self.visitors: dict[str, VisitorState] = {}
        self.identities: dict[str, IdentityState] = {}
        self.merged_into: dict[str, str] = {}
        self.merges: list[Merge] = []
        self.actions: list[tuple[str, str]] = []   # (label, profile stamped at the time)

    def track(self, label, cookie=None, id=None, email=None):
        ids = Identifiers(id=id, email=email, cookie=cookie)
        key = ids.visitor_key
        decision = resolve_visitor(P, key, self.visitors.get(key), ids)
        self.visitors[key] = decision.state
        self.actions.append((label, decision.profile))
        for link in decision.links:
            answer = resolve_link(self.identities.get(link.identifier), link)
            self.identities[link.identifier] = answer.state
            if answer.merge:
                self.merges.append(answer.merge)
                self.merged_into[answer.merge.source] = answer.merge.into
            rebound = rebind(self.visitors.get(link.visitor_key), link, answer.answer)
            if rebound:
                self.visitors[link.visitor_key] = rebound

    def owner(self, profile):
        while profile in self.merged_into:
            profile = self.merged_into[profile]
        return profile

    def people(self):
        """Labels grouped by the profile they end on."""
        groups: dict[str, set[str]] = {}
        for label, profile in self.actions:
            groups.setdefault(self.owner(profile), set()).add(label)
        return sorted(groups.values(), key=sorted)


def test_anonymous_then_identified_is_one_person_with_the_earlier_actions():
    """The email is owned by another device already, so the anonymous device's earlier
    actions can only join the person through a merge (on its own device it would own the
    new email whatever resolution did)."""
    m = Model()
    m.track("laptop", cookie="c0", email="ann@x")
    m.track("a1", cookie="c1")
    m.track("a2", cookie="c1")
    m.track("login", cookie="c1", email="ann@x")
    m.track("a3", cookie="c1")
    assert m.people() == [{"laptop", "a1", "a2", "login", "a3"}]
    assert [(x.source, x.into) for x in m.merges] == [(pid("cookie:c1"), pid("cookie:c0"))]


def test_two_devices_one_email_are_one_profile_with_a_recorded_merge():
    m = Model()
    m.track("laptop", cookie="c1", email="ann@x")
    m.track("phone-anon", cookie="c2")
    m.track("phone-login", cookie="c2", email="ANN@x".lower())
    m.track("phone-after", cookie="c2")
    assert m.people() == [{"laptop", "phone-anon", "phone-login", "phone-after"}]
    assert m.merges == [Merge(pid("cookie:c2"), pid("cookie:c1"), "email:ann@x", P,
                              "cookie:c2")]


def test_two_ids_never_merge_even_on_one_device():
    m = Model()
    m.track("u1", cookie="shared", id="u1")
    m.track("u2", cookie="shared", id="u2")
    m.track("u1-again", cookie="other", id="u1")
    assert m.people() == [{"u1", "u1-again"}, {"u2"}]
    # the only merge folds the second device's cookie profile into u1, never u2 into u1
    assert m.merges == [Merge(pid("cookie:other"), pid("cookie:shared"), "id:u1", P,
                              "cookie:other")]


def test_two_emails_never_merge():
    m = Model()
    m.track("e1", cookie="c", email="a@x")
    m.track("e2", cookie="c", email="b@x")
    assert m.people() == [{"e1"}, {"e2"}] and m.merges == []


def test_an_email_with_another_id_does_not_join_two_ids():
    m = Model()
    m.track("ann", cookie="c1", id="u1", email="shared@x")
    m.track("bob", cookie="c2", id="u2", email="shared@x")
    assert m.people() == [{"ann"}, {"bob"}] and m.merges == []


def test_an_email_profile_joins_the_id_that_claims_it():
    m = Model()
    m.track("newsletter", cookie="c1", email="ann@x")
    m.track("signup", cookie="c2", id="u1", email="ann@x")
    assert m.people() == [{"newsletter", "signup"}]
    assert m.merges == [Merge(pid("cookie:c1"), pid("cookie:c2"), "email:ann@x", P,
                              "cookie:c2")]


def test_identified_requests_without_a_cookie_are_keyed_by_their_identifier():
    m = Model()
    m.track("server-side", id="u1")
    m.track("browser", cookie="c1", id="u1")
    assert m.people() == [{"server-side", "browser"}]


def test_no_identifier_at_all_stays_its_own_visitor():
    m = Model()
    m.track("a", cookie="assigned-1")
    m.track("b", cookie="assigned-2")
    assert m.people() == [{"a"}, {"b"}]


def test_replaying_the_same_story_makes_the_same_decisions():
    def story():
        m = Model()
        m.track("x", cookie="c1")
        m.track("y", cookie="c1", email="e@x")
        m.track("z", cookie="c2", email="e@x")
        return m.actions, m.merges

    assert story() == story()


@pytest.mark.parametrize(("state", "link", "expected_answer", "merge"), [
    (None, Link("email:e", "pA", "cookie:c"), "pA", None),
    (IdentityState("pA"), Link("email:e", "pA", "cookie:c"), "pA", None),
    (IdentityState("pA"), Link("email:e", "pB", "cookie:c"), "pA",
     Merge("pB", "pA", "email:e", "", "cookie:c")),
    (IdentityState("pA", True), Link("id:u", "pB", "cookie:c", True), "pA",
     Merge("pB", "pA", "id:u", "", "cookie:c")),
    (IdentityState("pA", True), Link("email:e", "pB", "cookie:c", True), "pB", None),
    (IdentityState("pA", False), Link("email:e", "pB", "cookie:c", True), "pB",
     Merge("pA", "pB", "email:e", "", "cookie:c")),
], ids=["new", "same", "cookie-joins-email", "cookie-joins-id", "email-of-other-id",
        "email-joins-id"])
def test_resolve_link(state, link, expected_answer, merge):
    decision = resolve_link(state, link)
    assert (decision.answer, decision.merge) == (expected_answer, merge)


def test_a_late_answer_does_not_undo_a_newer_decision():
    link = Link("email:e", "pOld", "cookie:c")
    assert rebind(VisitorState("pNew"), link, "pX") is None
    assert rebind(VisitorState("pOld"), link, "pOld") is None
    assert rebind(VisitorState("pOld", email="e"), link, "pX") == VisitorState("pX", email="e")
