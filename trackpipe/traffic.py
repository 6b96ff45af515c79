"""Traffic as the SDKs send it, for a local pipeline: people who land from a campaign, browse,
come back on a second device, sign up and buy. Pure: a seeded generator of requests (no I/O,
no clock); ``trackpipe demo traffic`` sends them, and a benchmark may build records of them.

A person's journey (``Traffic.journey``), in the order one person's requests must arrive:

- on a desktop browser (its own cookie and user agent): a landing pageview whose ``ce_url``
  carries ``utm_*`` tags, pings that keep the visit alive, more pageviews; most then identify
  (``/track/identify`` with ``cv_email`` and ``cv_name``);
- some open the shop's phone app (another cookie, a mobile user agent), which sends its
  campaign as parameters of the request itself and asks for JSON answers, and identify there
  with the same email (the two devices merge into one profile);
- some of those go back to the browser, send a batch of actions with ``/track/push`` and buy
  (``event=purchase`` with ``ce_amount``: the demo project's trigger fires for it), then browse
  on; a browser asks for the default (JavaScript) answers, which hand out the trigger's JS
  action.

The first journey of a ``Traffic`` does all of it, so a few seconds of traffic show every kind.

Every request comes from this machine, whose loopback address has no country, so each device
sends its visitor's address as the ``ip`` parameter, as server-side SDKs do: a public address
of a network in one of a few countries, so the dashboard and ``query`` show where people are.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

PEOPLE = [("Ada", "Lovelace"), ("Grace", "Hopper"), ("Alan", "Turing"), ("Katherine", "Johnson"),
          ("Edsger", "Dijkstra"), ("Barbara", "Liskov"), ("Donald", "Knuth"),
          ("Margaret", "Hamilton"), ("Dennis", "Ritchie"), ("Frances", "Allen"),
          ("Ken", "Thompson"), ("Radia", "Perlman"), ("Tim", "Berners-Lee"), ("Hedy", "Lamarr")]
DESKTOPS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.68",
]
PHONES = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.6478.71 Mobile Safari/537.36",
]
CAMPAIGNS = [  # where a landing page's visitors come from: utm_source, utm_medium, utm_campaign
    ("newsletter", "email", "winter-sale"), ("google", "cpc", "brand-search"),
    ("mastodon", "social", "launch-week"), ("partner-blog", "referral", "guest-post")]
APP_CAMPAIGNS = [("instagram", "social", "spring-drop"), ("push", "app", "cart-reminder")]
REFERERS = ["https://www.google.com/", "https://news.ycombinator.com/", "https://duckduckgo.com/",
            ""]
# networks (/16) whose registered country the shipped database knows: GB, DE, NL, BR, JP, US,
# CA, AU, FR
NETWORKS = ["81.2", "85.214", "193.0", "200.160", "133.11", "151.101", "24.48", "1.128", "80.12"]
LANGUAGES = ["en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9", "en-GB,en;q=0.8"]
PAGES = ["/", "/products/notebook", "/products/pen", "/products/backpack", "/pricing",
         "/blog/how-we-ship", "/about"]
ITEMS = {"notebook": 24.0, "pen": 9.5, "backpack": 89.0, "desk-lamp": 45.0}
SITE = "https://demo.example"


@dataclass(frozen=True)
class Request:
    """One tracking request as an SDK sends it: ``params`` go in the query string, ``form`` (a
    push's payload) in a form body. ``js`` asks for the default JavaScript answer, which hands
    out queued JS actions; the others ask for JSON."""
    kind: str                                   # pageview, ping, identify, push, purchase
    path: str                                   # /track/ce, /track/identify, …
    params: tuple[tuple[str, str], ...]
    headers: tuple[tuple[str, str], ...]
    form: tuple[tuple[str, str], ...] = ()
    js: bool = False

    @property
    def method(self) -> str:
        return "POST" if self.form else "GET"

    def query(self) -> str:
        return urlencode(self.params)


@dataclass
class Device:
    cookie: str
    user_agent: str
    language: str
    browser: bool = True  # a browser asks for JavaScript answers; an app asks for JSON
    ip: str = ""  # the visitor's address, sent as the ``ip`` parameter


@dataclass
class Journey:
    """One person's requests, in the order they must arrive."""
    email: str
    name: str
    cookies: list[str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)


class Traffic:
    """People's journeys for ``project``; the same ``seed`` makes the same requests."""

    def __init__(self, project: str, seed: int | None = None) -> None:
        self.project = project
        self._random = random.Random(seed)
        self.run = f"{self._random.getrandbits(24):06x}"  # people of one run are new people
        self._people = 0

    def journey(self) -> Journey:
        n, r = self._people, self._random
        self._people += 1
        first, last = PEOPLE[n % len(PEOPLE)]
        full = n == 0  # the first one does everything, so a short run shows every kind
        person = Journey(f"{first}.{last}+{self.run}-{n}@example.com".lower(), f"{first} {last}")
        desktop = self._device(person, f"{n}d", r.choice(DESKTOPS))
        self._landing(person, desktop, r.choice(CAMPAIGNS))
        for page in r.sample(PAGES[1:], 3 if full else r.randint(0, 3)):
            self._ping(person, desktop)
            self._pageview(person, desktop, page)
        if not (full or r.random() < 0.7):
            return person  # browsed anonymously
        self._identify(person, desktop)
        if not (full or r.random() < 0.5):
            return person
        phone = self._device(person, f"{n}m", r.choice(PHONES), browser=False)
        source, medium, campaign = r.choice(APP_CAMPAIGNS)
        self._pageview(person, phone, "/", utm_source=source, utm_medium=medium,
                       utm_campaign=campaign)  # an app sends its campaign as parameters
        self._identify(person, phone)           # the same email: the devices merge
        if full or r.random() < 0.6:
            item = r.choice(list(ITEMS))
            self._push(person, desktop, item)
            self._purchase(person, desktop, item)
            for page in ("/thank-you", "/account"):  # JS answers hand out the trigger's action
                self._ping(person, desktop)
                self._pageview(person, desktop, page)
        return person

    def requests(self, count: int, visitors: int = 10) -> Iterator[Request]:
        """``count`` requests of ``visitors`` people at a time, interleaved as their journeys
        would be (each person's in order), for a benchmark."""
        order = random.Random(self.run)  # apart from the people's: the same journeys
        open_journeys: list[list[Request]] = []
        for _ in range(count):
            while len(open_journeys) < visitors:
                open_journeys.append(list(self.journey().requests))
            at = order.randrange(len(open_journeys))
            yield open_journeys[at].pop(0)
            if not open_journeys[at]:
                open_journeys.pop(at)

    # -- the requests ----------------------------------------------------------------------------

    def _device(self, person: Journey, name: str, user_agent: str,
                browser: bool = True) -> Device:
        cookie = f"demo-{self.run}-{name}"
        person.cookies.append(cookie)
        r = self._random
        address = f"{r.choice(NETWORKS)}.{r.randrange(256)}.{r.randrange(1, 255)}"
        return Device(cookie, user_agent, r.choice(LANGUAGES), browser, address)

    def _add(self, person: Journey, device: Device, kind: str, endpoint: str,
             params: dict[str, str], referer: str = "", form: dict[str, str] | None = None
             ) -> None:
        query = {"project": self.project, **params, "cookie": device.cookie, "ip": device.ip}
        if not device.browser:
            query["response"] = "json"
        headers = [("User-Agent", device.user_agent), ("Accept-Language", device.language)]
        if referer:
            headers.append(("Referer", referer))
        person.requests.append(Request(kind, f"/track/{endpoint}", tuple(query.items()),
                                       tuple(headers), tuple((form or {}).items()),
                                       js=device.browser))

    def _landing(self, person: Journey, device: Device, campaign: tuple[str, str, str]) -> None:
        source, medium, name = campaign
        url = (f"{SITE}/landing/{name}?utm_source={source}&utm_medium={medium}"
               f"&utm_campaign={name}")
        self._add(person, device, "pageview", "ce", {
            "event": "pv", "ce_url": url, "ce_title": name.replace("-", " ").title()},
            referer=self._random.choice(REFERERS))

    def _pageview(self, person: Journey, device: Device, page: str, **own: str) -> None:
        self._add(person, device, "pageview", "ce", {
            "event": "pv", "ce_url": SITE + page,
            "ce_title": page.strip("/").replace("/", " · ") or "home", **own},
            referer=SITE + "/")

    def _ping(self, person: Journey, device: Device) -> None:
        self._add(person, device, "ping", "ping", {})

    def _identify(self, person: Journey, device: Device) -> None:
        self._add(person, device, "identify", "identify", {
            "cv_email": person.email, "cv_name": person.name,
            "cv_plan": self._random.choice(["free", "team", "pro"])})

    def _push(self, person: Journey, device: Device, item: str) -> None:
        """A batch of actions the SDK held (an offline phone, a page closed): one request."""
        lines = [{"endpoint": "ce", "params": {"event": event, "ce_item": item}}
                 for event in ("view_item", "add_to_cart")]
        self._add(person, device, "push", "push", {},
                  form={"payload": "\n".join(json.dumps(line) for line in lines)})

    def _purchase(self, person: Journey, device: Device, item: str) -> None:
        quantity = self._random.randint(1, 3)
        self._add(person, device, "purchase", "ce", {
            "event": "purchase", "ce_item": item, "ce_quantity": str(quantity),
            "ce_amount": f"{ITEMS[item] * quantity:.2f}", "ce_currency": "EUR"})
