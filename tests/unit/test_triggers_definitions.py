"""What the triggers service follows (rules, projects) and the webhooks it holds for want of
a signing secret, released once the registry gives the project one."""

import logging
from collections import defaultdict

from schemas.firing import Firing
from schemas.project import ProjectRecord
from schemas.trigger import TriggerRule
from triggers.definitions import Definitions
from triggers.held import HeldWebhooks


def rule(name: str, event: str = "signup", project: str = "shop") -> TriggerRule:
    return TriggerRule.build(project, name, event, js="f()")


def test_rules_are_kept_by_project_and_a_tombstone_removes_one():
    definitions = Definitions(on_secret=lambda project: None)
    definitions.apply_rule("shop\na", rule("a"))
    definitions.apply_rule("shop\nb", rule("b", event="buy"))
    definitions.apply_rule("other\na", rule("a", project="other"))
    assert definitions.candidates({"project": "shop", "event": "signup"}) == [rule("a")]
    definitions.apply_rule("shop\na", None)
    assert definitions.candidates({"project": "shop", "event": "signup"}) == []
    assert definitions.candidates({"event": "signup"}) == []  # no project: nothing


def test_a_project_with_a_signing_secret_is_announced_and_one_without_is_not():
    announced = []
    definitions = Definitions(on_secret=announced.append)
    definitions.apply_project("old", ProjectRecord.build("old"))
    definitions.apply_project("shop", ProjectRecord.build("shop", webhook_secret="s3" * 8))
    assert announced == ["shop"]
    assert definitions.webhook_secret("shop") == "s3" * 8
    assert definitions.webhook_secret("old") is None
    definitions.apply_project("shop", None)
    assert definitions.webhook_secret("shop") is None


def test_held_webhooks_are_said_once_per_project_and_released_once(caplog):
    counts: dict[str, int] = defaultdict(int)
    held = HeldWebhooks(counts)
    fired = [Firing(f"e{i}/r", i % 2, rule("r", project="old"), {}, None) for i in range(3)]
    with caplog.at_level(logging.WARNING):
        for f in fired:
            held.hold(f)
    assert sum("has no webhook signing secret" in r.message for r in caplog.records) == 1
    assert counts["held unsigned"] == 3
    assert held.release("shop") == set()
    assert held.release("old") == {0, 1}
    assert held.release("old") == set()  # released: read again once, not at every record
