"""Browser, OS and device from user agents (``processors.useragents``): known headers, the
crawlers, the SDKs' HTTP clients, an empty and a 10 KB header, and the cache's hit rate on the
shipped mix of real user agents (``tests/data/user_agents.tsv``)."""

import random
from pathlib import Path

import pytest

from processors.useragents import MAX_PARSED, UserAgents

MIX = Path(__file__).parents[1] / "data" / "user_agents.tsv"


def mix() -> list[tuple[int, str]]:
    rows = [line.rstrip("\n").split("\t", 1) for line in MIX.read_text().splitlines()
            if line and not line.startswith("#")]
    return [(int(weight), ua) for weight, ua in rows]


@pytest.fixture(scope="module")
def agents():
    return UserAgents()


KNOWN = [
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.6478.122 Mobile Safari/537.36",
     {"browser": "Chrome Mobile", "browser_version": "126", "os": "Android", "os_version": "14",
      "device_type": "mobile", "device": "mobile", "device_brand": "Google",
      "device_model": "Pixel 8"}),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36",
     {"browser": "Chrome", "browser_version": "126", "os": "Windows", "os_version": "10",
      "device_type": "desktop", "device": "desktop"}),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87",
     {"browser": "Edge", "browser_version": "126", "os": "Windows", "os_version": "10",
      "device_type": "desktop", "device": "desktop"}),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.5 Safari/605.1.15",
     {"browser": "Safari", "browser_version": "17", "os": "Mac OS X", "os_version": "10.15",
      "device_type": "desktop", "device": "desktop", "device_brand": "Apple",
      "device_model": "Mac"}),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
     {"browser": "Mobile Safari", "browser_version": "17", "os": "iOS", "os_version": "17.5",
      "device_type": "mobile", "device": "mobile", "device_brand": "Apple",
      "device_model": "iPhone"}),
    ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.5 Mobile/15E148 Safari/604.1",
     {"browser": "Mobile Safari", "browser_version": "17", "os": "iOS", "os_version": "17.5",
      "device_type": "tablet", "device": "tablet", "device_brand": "Apple",
      "device_model": "iPad"}),
    ("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36",
     {"browser": "Chrome", "browser_version": "126", "os": "Android", "os_version": "13",
      "device_type": "tablet", "device": "tablet"}),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
     {"browser": "Firefox", "browser_version": "127", "os": "Linux", "device_type": "desktop",
      "device": "desktop"}),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/126.0.0.0 Safari/537.36",
     {"browser": "Chrome", "browser_version": "126", "os": "Chrome OS",
      "os_version": "14541.0", "device_type": "desktop", "device": "desktop"}),
    # the SDKs' HTTP clients
    ("Dalvik/2.1.0 (Linux; U; Android 13; SM-S911B Build/TP1A.220624.014)",
     {"browser": "Android", "browser_version": "13", "os": "Android", "os_version": "13",
      "device_type": "mobile", "device": "mobile", "device_brand": "Samsung",
      "device_model": "SM-S911B"}),
    ("ShopApp/4.2.1 CFNetwork/1494.0.7 Darwin/23.4.0",
     {"browser": "ShopApp", "browser_version": "4", "os": "iOS", "os_version": "17.4",
      "device_type": "mobile", "device": "mobile", "device_brand": "Apple"}),
    ("python-requests/2.31.0", {"browser": "Python Requests", "browser_version": "2"}),
    ("curl/8.5.0", {"browser": "curl", "browser_version": "8"}),
    ("Java/17.0.9", {"browser": "Java", "browser_version": "17", "device_type": "bot",
                     "device": "bot"}),
    # crawlers
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
     {"browser": "Googlebot", "browser_version": "2", "device_type": "bot", "device": "bot"}),
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like "
     "Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 (compatible; Googlebot/2.1; "
     "+http://www.google.com/bot.html)",
     {"browser": "Googlebot", "browser_version": "2", "os": "Android", "os_version": "6.0",
      "device_type": "bot", "device": "bot"}),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; "
     "+http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
     {"browser": "bingbot", "browser_version": "2", "device_type": "bot", "device": "bot"}),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
     {"browser": "YandexBot", "browser_version": "3", "device_type": "bot", "device": "bot"}),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
     {"browser": "FacebookBot", "browser_version": "1", "device_type": "bot", "device": "bot"}),
    ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
     "+https://openai.com/gptbot)",
     {"browser": "GPTBot", "browser_version": "1", "device_type": "bot", "device": "bot"}),
    # nothing to say
    ("", {}),
    ("x" * 10 * 1024, {}),
]


@pytest.mark.parametrize(("user_agent", "expected"), KNOWN,
                         ids=[f"{i}-{ua[:30]}" for i, (ua, _) in enumerate(KNOWN)])
def test_a_known_user_agent_gives_its_browser_os_and_device(agents, user_agent, expected):
    assert dict(agents.describe(user_agent)) == expected


def test_a_10_kb_header_is_parsed_by_its_start_as_a_real_one_is(agents):
    real = KNOWN[0][0]
    padded = real + " Extension/1.0" * (10 * 1024 // 14)
    assert len(padded) > 10 * 1024 > MAX_PARSED
    assert dict(agents.describe(padded)) == KNOWN[0][1]


def test_every_user_agent_of_the_shipped_mix_is_real_enough_to_name_a_browser():
    agents = UserAgents()
    rows = mix()
    assert len(rows) >= 300 and len({ua for _, ua in rows}) == len(rows)
    unnamed = [ua for _, ua in rows if "browser" not in agents.describe(ua)]
    # the only ones uap-core names nothing of: a few HTTP libraries' bare names
    assert len(unnamed) <= 10, unnamed


@pytest.mark.parametrize("needle", ["Googlebot", "bingbot", "YandexBot", "Baiduspider",
                                    "AhrefsBot", "SemrushBot", "Applebot", "GPTBot", "ClaudeBot",
                                    "PetalBot", "Bytespider", "DuckDuckBot", "CCBot"])
def test_the_big_crawlers_of_the_mix_are_bots(needle):
    agents = UserAgents()
    crawlers = [ua for _, ua in mix() if needle in ua]
    assert crawlers
    assert all(agents.describe(ua).get("device_type") == "bot" for ua in crawlers), needle


def test_the_cache_answers_most_requests_of_a_realistic_mix():
    """20,000 requests drawn from the mix by its weights: each distinct user agent is parsed
    once, the rest are cache hits (this is the hit rate docs/benchmarks.md states)."""
    agents = UserAgents()
    weights, uas = zip(*mix(), strict=True)
    drawn = random.Random(7).choices(uas, weights=weights, k=20_000)
    for ua in drawn:
        agents.describe(ua)
    hits, misses = agents.hit_rate()
    assert misses == len(set(drawn))
    assert hits / (hits + misses) > 0.98


def test_the_cache_is_bounded_and_a_forgotten_user_agent_is_parsed_again_the_same():
    agents = UserAgents(cache_size=2)
    first = dict(agents.describe(KNOWN[0][0]))
    agents.describe(KNOWN[1][0])
    agents.describe(KNOWN[2][0])
    assert dict(agents.describe(KNOWN[0][0])) == first
    assert agents.hit_rate() == (0, 4)
