"""What the processors add to a request and where it goes (``processors.enrichment``): a group
the request sends itself wins over the derived one; a project's --ip-anonymize and
--no-location; the derived names on the day-log line, the actions topic, the visit started
record and the profile's ``last_seen``, through the stages with no broker; what triggers and the
SQL views read of them."""

import json

import pytest

from logstore import sql as logsql
from logstore.reading import read_lines
from processors import profiles
from processors.enrichment import Enrichment, combine
from processors.pipeline import Stages
from runtime.settings import Settings
from schemas import envelope
from schemas.action import DERIVED, GROUPS
from schemas.profile import ProfileUpdate, change_from_obj, new_profile
from schemas.project import ProjectRecord
from schemas.raw import RawRecord
from schemas.trigger import Condition, TriggerError, TriggerRule
from triggers import rules

DAY = "2027-01-15"
RECEIVED_MS = 1_800_000_000_000  # 2027-01-15
CHROME_ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36")
PIXEL = {"browser": "Chrome Mobile", "browser_version": "126", "os": "Android",
         "os_version": "14", "device_type": "mobile", "device": "mobile",
         "device_brand": "Google", "device_model": "Pixel 8"}
US = {"country": "US", "country_name": "United States"}


# -- what the request sends wins, a group at a time ------------------------------------------

@pytest.mark.parametrize(("sent", "expected"), [
    ({}, {**PIXEL, **US}),
    ({"browser": "ShopApp"}, {**PIXEL, "browser": "ShopApp", **US} | {"browser_version": None}),
    ({"os_version": "14.1"}, {**PIXEL, "os": None, "os_version": "14.1", **US}),
    ({"device": "tablet"}, {**{k: v for k, v in PIXEL.items() if not k.startswith("device")},
                            "device_type": "tablet", "device": "tablet", **US}),
    ({"device_type": "tv"}, {**{k: v for k, v in PIXEL.items() if not k.startswith("device")},
                             "device_type": "tv", "device": "tv", **US}),
    ({"country": "DE"}, {**PIXEL, "country": "DE"}),
    ({"city": "Berlin"}, {**PIXEL, "city": "Berlin"}),
    ({"country": "", "browser": None}, {**PIXEL, **US}),  # empty: not sent
], ids=["nothing", "browser", "os_version", "device", "device_type", "country", "city", "empty"])
def test_a_group_the_request_sends_replaces_that_groups_derived_values(sent, expected):
    expected = {k: v for k, v in expected.items() if v is not None}
    combined = combine(sent, {**PIXEL, **US})
    assert combined == expected
    assert list(combined) == [name for name in DERIVED if name in combined]  # in their order


def test_the_groups_hold_every_derived_name_once():
    assert sorted(DERIVED) == sorted({name for group in GROUPS for name in group})


@pytest.fixture(scope="module")
def enrichment():
    return Enrichment.load()


def record(ip_anonymize=False, location=True):
    return ProjectRecord.build("shop.example", ip_anonymize=ip_anonymize, location=location)


@pytest.mark.parametrize(("settings", "ip", "kept", "place"), [
    (None, "8.8.8.8", "8.8.8.8", US),
    (record(), "8.8.8.8", "8.8.8.8", US),
    (record(ip_anonymize=True), "8.8.8.8", "8.8.8.0", US),  # looked up before it is zeroed
    (record(ip_anonymize=True), "2001:4860:4860::8888", "2001:4860:4860::", US),
    (record(location=False), "8.8.8.8", "8.8.8.8", {}),
    (record(ip_anonymize=True, location=False), "8.8.8.8", "8.8.8.0", {}),
    (record(ip_anonymize=True), "10.0.0.7", "10.0.0.0", {}),
], ids=["unknown-project", "defaults", "anonymize-v4", "anonymize-v6", "no-location",
        "both", "private"])
def test_a_projects_settings_say_what_is_looked_up_and_what_is_kept(enrichment, settings, ip,
                                                                    kept, place):
    enrichment.project_changed("shop.example", settings)
    try:
        enriched = enrichment.enrich("shop.example", ip, CHROME_ANDROID, {})
    finally:
        enrichment.project_changed("shop.example", None)
    assert enriched.ip == kept and enriched.anonymized == bool(settings and settings.ip_anonymize)
    assert enriched.fields == {**PIXEL, **place}


@pytest.mark.parametrize(("registry", "anonymize_ip", "locate", "kept", "place"), [
    (None, True, True, "8.8.8.0", US),        # a project this worker has not read yet
    (None, False, False, "8.8.8.8", {}),
    (record(), True, False, "8.8.8.0", {}),    # changed since the worker read it
    (record(ip_anonymize=True, location=False), False, True, "8.8.8.0", {}),  # unstamped
], ids=["new-anonymizing", "new-no-location", "stamped-since", "registry-stricter"])
def test_what_a_request_says_its_project_asked_holds_with_the_registry(
        enrichment, registry, anonymize_ip, locate, kept, place):
    enrichment.project_changed("shop.example", registry)
    try:
        enriched = enrichment.enrich("shop.example", "8.8.8.8", CHROME_ANDROID, {},
                                     anonymize_ip, locate)
    finally:
        enrichment.project_changed("shop.example", None)
    assert (enriched.ip, enriched.anonymized) == (kept, kept != "8.8.8.8")
    assert enriched.fields == {**PIXEL, **place}


def test_a_removed_project_is_back_to_the_defaults(enrichment):
    enrichment.project_changed("shop.example", record(ip_anonymize=True))
    enrichment.project_changed("shop.example", None)
    assert enrichment.enrich("shop.example", "8.8.8.8", "", {}).ip == "8.8.8.8"


def test_nothing_is_derived_without_enrichment():
    assert Enrichment.none().enrich("p", "8.8.8.8", CHROME_ANDROID, {}).fields == {}


# -- the project record and its new members -----------------------------------------------------

def test_a_project_record_keeps_its_address_settings_and_an_older_one_has_the_defaults():
    made = ProjectRecord.build("shop.example", ip_anonymize=True, location=False)
    assert ProjectRecord.from_bytes(made.to_bytes()) == made
    import msgpack
    older = msgpack.packb({"v": 1, "name": "old.example", "aliases": [], "retention_days": 30})
    old = ProjectRecord.from_bytes(older)
    assert (old.ip_anonymize, old.location) == (False, True)


# -- through the stages, no broker ----------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.sent = []

    async def send(self, topic, partition, messages):
        self.sent += [(topic, key, value) for key, value in messages]

    def values(self, name):
        return [value for topic, _, value in self.sent if topic == f"trackpipe.{name}"]


@pytest.fixture
def stages(tmp_path, enrichment):
    recorder = Recorder()
    made = Stages(Settings(kafka_bootstrap="127.0.0.1:1", data_dir=tmp_path, raw_partitions=2),
                  recorder, enrichment=enrichment)
    made.recorder = recorder
    yield made
    enrichment.project_changed("shop.example", None)
    made.visitors.journal.close()
    made.visitors.daylog.close()


def raw(n, ip="8.8.8.8", ua=CHROME_ANDROID, query="event=pv&cookie=c1", endpoint="ce"):
    return RawRecord(id=f"00000000-0000-7000-8000-{n:012d}", received_ms=RECEIVED_MS + n,
                     endpoint=endpoint, project="shop.example", ip=ip, user_agent=ua,
                     query=query.encode(), visitor_key="cookie:c1")


async def handle(stages, *records, offset=0):
    stages.visitors.handle_raw(0, offset, envelope.pack([r.to_bytes() for r in records]))
    await stages.commit()


async def test_the_derived_names_are_on_the_line_the_action_the_visit_and_the_profile(stages):
    await handle(stages, raw(1),
                 raw(2, ip="10.0.0.1", query="event=buy&cookie=c1&device=tablet"))
    first, second = read_lines(stages.visitors.daylog.root, "shop.example", [DAY])
    assert {k: first[k] for k in (*PIXEL, *US)} == {**PIXEL, **US}
    assert "country" not in second and second["device_type"] == second["device"] == "tablet"
    assert [json.loads(a)["country"] for a in stages.recorder.values("actions")[:1]] == ["US"]
    started, = [json.loads(v) for v in stages.recorder.values("visits")]
    assert started["type"] == "visit started"
    assert {k: started[k] for k in (*PIXEL, *US)} == {**PIXEL, **US}
    for value in stages.recorder.values("profile-updates"):  # the profiles stage's input
        for item in envelope.unpack(value):
            stages.profiles.handle_change(0, item)
    await stages.commit()
    profile = json.loads(stages.recorder.values("profiles")[-1])
    assert profile["last_seen"] == {"event_ms": RECEIVED_MS + 2, **second_seen(second)}


def second_seen(line):
    return {name: line[name] for name in DERIVED if name in line}


async def test_an_anonymizing_project_logs_and_publishes_no_full_address(stages):
    stages.enrichment.project_changed("shop.example", record(ip_anonymize=True))
    # an unusable timestamp: a warning whose sample is the request is published too
    await handle(stages, raw(1, ip="8.8.8.8", query="event=pv&cookie=c1&ip=8.8.8.8&timestamp=x"),
                 raw(2, ip="2001:4860:4860::8888"))
    root = stages.visitors.daylog.root.parent
    written = b"".join(path.read_bytes() for path in root.rglob("*") if path.is_file())
    sent = b"".join(value or b"" for _, _, value in stages.recorder.sent)
    assert b"timestamp_replaced" in sent and b"ip=(withheld)" in sent
    for full in (b"8.8.8.8", b"2001:4860:4860::8888"):
        assert full not in written and full not in sent
    first, second = read_lines(stages.visitors.daylog.root, "shop.example", [DAY])
    assert (first["ip"], first["builtins"]["ip"], first["country"]) == ("8.8.8.0", "8.8.8.0",
                                                                       "US")
    assert (second["ip"], second["country"]) == ("2001:4860:4860::", "US")


async def test_a_project_without_location_gets_no_country(stages):
    stages.enrichment.project_changed("shop.example", record(location=False))
    await handle(stages, raw(1))
    line, = read_lines(stages.visitors.daylog.root, "shop.example", [DAY])
    assert "country" not in line and line["ip"] == "8.8.8.8"
    assert line["browser"] == "Chrome Mobile"


# -- the profile's last_seen ---------------------------------------------------------------------

def test_last_seen_is_the_latest_requests_by_event_time_whole():
    update = ProfileUpdate("p", "a")
    update.add(20, seen={"browser": "Firefox", "city": "Berlin"})
    update.add(10, seen={"browser": "Chrome"})       # older: not taken
    update.add(30)                                    # nothing derived: nothing changes
    assert (update.seen_ms, update.seen) == (20, {"browser": "Firefox", "city": "Berlin"})
    assert change_from_obj(update.to_obj()) == update  # travels as a member added last
    profile = profiles.apply_update(new_profile("p", "a"), update)
    assert profile["last_seen"] == {"event_ms": 20, "browser": "Firefox", "city": "Berlin"}
    older = ProfileUpdate("p", "a", origin=[0, 1])
    older.add(5, seen={"browser": "Safari"})
    assert profiles.apply_update(profile, older)["last_seen"]["browser"] == "Firefox"


def test_an_update_without_derived_names_is_as_it_was_written_before():
    update = ProfileUpdate("p", "a")
    update.add(20, properties={"x": 1})
    assert len(update.to_obj()) == 13
    assert "last_seen" not in profiles.apply_update(new_profile("p", "a"), update)


def test_a_fold_keeps_the_newer_last_seen():
    def seen_at(ms, browser):
        update = ProfileUpdate("p", "x")
        update.add(ms, seen={"browser": browser})
        return profiles.apply_update(new_profile("p", "x"), update)

    into, source = seen_at(10, "Chrome"), {**seen_at(20, "Firefox"), "profile": "src"}
    assert profiles.fold(into, source)["last_seen"]["browser"] == "Firefox"
    assert profiles.fold(source | {"profile": "y"}, {**into, "profile": "src2"}
                         )["last_seen"]["browser"] == "Firefox"


# -- triggers can match on them --------------------------------------------------------------------

@pytest.mark.parametrize(("where", "fires"), [
    ("country = DE", True), ("country = US", False), ("country != US", True),
    ("device_type = mobile", True), ("city exists", False), ("browser contains chrome", True),
])
def test_a_trigger_matches_on_a_derived_name(where, fires):
    rule = TriggerRule.build("shop", "r", "buy", webhook="http://127.0.0.1:9/h",
                             conditions=(Condition.parse(where.split(" ", 2)),))
    action = {"type": "ce", "event": "buy", "over_quota": False, "properties": {},
              "country": "DE", "device_type": "mobile", "browser": "Chrome Mobile"}
    assert bool(rules.matching([rule], action, None)) is fires
    assert TriggerRule.from_bytes(rule.to_bytes()) == rule


def test_a_condition_on_a_name_that_is_not_derived_is_still_refused():
    with pytest.raises(TriggerError, match="derived names"):
        Condition.parse(["user_agent", "=", "x"])


# -- the SQL views ---------------------------------------------------------------------------

async def test_the_actions_and_visits_views_have_the_derived_names(stages):
    await handle(stages, raw(1), raw(2, ip="193.0.6.139", ua="curl/8.5.0"))
    folder = stages.visitors.daylog.root / "shop.example"
    with logsql.connect(folder, settings=Settings()) as views:
        _, rows = logsql.run(views, "SELECT country, device_type, browser_version, city "
                                    "FROM actions ORDER BY received_ms")
        assert rows == [("US", "mobile", "126", None), ("NL", None, "8", None)]
        _, rows = logsql.run(views, "SELECT country, count(*) FROM actions GROUP BY country "
                                    "ORDER BY country")
        assert rows == [("NL", 1), ("US", 1)]
        _, rows = logsql.run(views, "SELECT browser, device_type, country FROM visits")
        assert rows == [("Chrome Mobile", "mobile", "US")]  # as the visit started
