import pytest

from processors.campaigns import parse_campaign
from processors.timestamps import FUTURE_TOLERANCE_MS, Clock, EventTime, event_time

URL = "https://shop.example/p?utm_campaign=spring&utm_source=news&utm_medium=email" \
      "&utm_term=shoes&utm_content=hero&utm_id=42"
ALL = {"campaign_name": "spring", "campaign_source": "news", "campaign_medium": "email",
       "campaign_term": "shoes", "campaign_content": "hero", "campaign_id": "42"}


@pytest.mark.parametrize(("event", "props", "expected"), [
    ("pv", {"url": URL}, ALL),
    ("pv", {"uri": "/p?woo_campaign=fall&woo_source=ads"},
     {"campaign_name": "fall", "campaign_source": "ads"}),
    ("pv", {"url": "/p?UTM_SOURCE=caps&utm_medium=a+b"},
     {"campaign_source": "caps", "campaign_medium": "a b"}),
    ("pv", {"url": "/p?utm_source=u&woo_source=w"}, {"campaign_source": "u"}),
    ("pv", {"url": URL, "campaign_name": "explicit"}, {}),
    ("buy", {"url": URL}, {}),
    ("pv", {"url": "/p?utm_source="}, {}),
    ("pv", {"url": "/plain"}, {}),
    ("pv", {}, {}),
    ("pv", {"url": "http://[broken/?utm_source=x"}, {}),
], ids=["all-six", "woo-and-uri", "case-and-plus", "utm-beats-woo", "explicit-wins",
        "not-a-pageview", "empty-value", "no-query", "no-url", "unparseable-url"])
def test_parse_campaign(event, props, expected):
    try:
        assert parse_campaign(event, props) == expected
    except ValueError:  # urlsplit refuses some broken URLs: that must not escape
        pytest.fail("parse_campaign raised on a broken URL")


@pytest.mark.parametrize(("event", "props", "request_params", "expected"), [
    ("pv", {}, {"utm_campaign": "spring", "utm_source": "news"},
     {"campaign_name": "spring", "campaign_source": "news"}),
    ("purchase", {"url": URL}, {"utm_campaign": "server"}, {"campaign_name": "server"}),
    ("pv", {"url": URL}, {"utm_campaign": "own", "woo_medium": "sms"},
     {**ALL, "campaign_name": "own", "campaign_medium": "sms"}),
    ("pv", {"url": "/p?utm_term=url"}, {"UTM_Source": "caps", "woo_source": "w"},
     {"campaign_source": "caps", "campaign_term": "url"}),
    ("pv", {"url": URL}, {"utm_campaign": ""}, ALL),
    ("pv", {}, {"utm_id": 42, "utm_term": ["a"], "utm_medium": None}, {"campaign_id": "42"}),
    ("pv", {"campaign_source": "explicit"}, {"utm_campaign": "own"}, {}),
    ("pv", {"url": URL}, {"lang": "de", "page": "2"}, ALL),
], ids=["own-only", "own-on-any-action", "own-before-url-tag-by-tag", "own-case-and-utm-first",
        "own-empty-falls-back", "own-numbers-only-scalars", "explicit-wins-over-own",
        "no-own-tags"])
def test_the_requests_own_campaign_parameters_come_first(event, props, request_params,
                                                         expected):
    assert parse_campaign(event, props, request_params) == expected


NOW = 1_700_000_000_000


@pytest.mark.parametrize(("timestamp", "expected"), [
    (None, EventTime(NOW, Clock.RECEIPT)),
    ("", EventTime(NOW, Clock.RECEIPT)),
    ("abc", EventTime(NOW, Clock.RECEIPT)),
    ("-5", EventTime(NOW, Clock.RECEIPT)),
    (True, EventTime(NOW, Clock.RECEIPT)),
    ("1492030800000", EventTime(1492030800000, Clock.SENDER)),
    (1492030800000, EventTime(1492030800000, Clock.SENDER)),
    ("1492030800000.7", EventTime(1492030800000, Clock.SENDER)),
    (str(NOW + FUTURE_TOLERANCE_MS), EventTime(NOW + FUTURE_TOLERANCE_MS, Clock.SENDER)),
    (str(NOW + FUTURE_TOLERANCE_MS + 1),
     EventTime(NOW + FUTURE_TOLERANCE_MS + 1, Clock.SENDER, future=True)),
    ("253402300799999", EventTime(253402300799999, Clock.SENDER, future=True)),
    ("253402300800000", EventTime(NOW, Clock.RECEIPT)),   # the year 10000: no day to log it
    ("1e30", EventTime(NOW, Clock.RECEIPT)),
    ("inf", EventTime(NOW, Clock.RECEIPT)),
    ("nan", EventTime(NOW, Clock.RECEIPT)),
], ids=["absent", "empty", "text", "negative", "bool", "past", "number", "fraction",
        "within-skew", "future", "year-9999", "year-10000", "huge", "infinite", "nan"])
def test_event_time(timestamp, expected):
    assert event_time(timestamp, NOW) == expected
