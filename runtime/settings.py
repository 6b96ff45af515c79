"""The one settings object of every trackpipe process.

Built once at start from the environment (variables prefixed ``TRACKPIPE_``) and passed down;
nothing reads the environment at import time. Every field has a documented default (the
README's table is checked against ``documented_fields()``), units are in the names, and a bad
value refuses to start with a message that names the variable.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "TRACKPIPE_"
# A push's lines may grow to gateway.expansion.OWN_GROWTH (6) times their text in records
# before a single line is decoded: a smaller multiple would refuse pushes that are fine.
MIN_PUSH_EXPANSION = 8


def _setting(default: object, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


class SettingsError(ValueError):
    """A TRACKPIPE_* variable has a value we cannot use."""


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = _setting("",
        "Bootstrap servers of an existing cluster; empty: the local `trackpipe kafka` broker.")
    topic_prefix: str = _setting("trackpipe.",
        "Prefix of every topic name.")
    data_dir: Path = _setting(Path("data"),
        "Folder for the spool, the day logs and the local Kafka.")
    http_host: str = _setting("127.0.0.1",
        "Address the gateway listens on.")
    http_port: int = _setting(8080,
        "Port the gateway listens on.")
    ack_deadline_ms: int = _setting(300,
        "How long the gateway waits for Kafka's acknowledgement before answering 202.")
    envelope_linger_ms: int = _setting(0,
        "How long a gateway lets a raw partition's envelope fill before it sends it (when none "
        "of the partition's is in flight): bigger envelopes cost the processors less a record.")
    max_url_bytes: int = _setting(64 * 1024,
        "Longest accepted request target (path + query); longer gets 414.")
    max_body_bytes: int = _setting(1024 * 1024,
        "Largest accepted request body; larger gets 413.")
    max_push_lines: int = _setting(1000,
        "Most lines one `/track/push` may hold (lines are separated by `\\n`); more gets 413.")
    max_push_expansion: int = _setting(16,
        "Most bytes of raw records one `/track/push` may make, as a multiple of the request's "
        "own bytes (URL, headers, body): every line carries the query, headers and outer "
        "form fields; more gets 413.")
    push_expansion_floor_bytes: int = _setting(256 * 1024,
        "Bytes of raw records any `/track/push` may make whatever its own size, so a short "
        "push with long headers is not refused.")
    max_header_bytes: int = _setting(64 * 1024,
        "Most bytes of a request's headers (and the request line apart from its target); "
        "more gets 431 and the connection is closed.")
    max_header_count: int = _setting(100,
        "Most header fields one request may carry; more gets 431 and the connection is "
        "closed.")
    header_timeout_ms: int = _setting(10_000,
        "How long a client may take to send a request's headers before it is disconnected.")
    body_timeout_ms: int = _setting(30_000,
        "How long a client may take to send a request's body before it gets 408.")
    max_connections: int = _setting(4096,
        "Connections and requests one gateway process holds at once; beyond, 503.")
    spool_max_bytes: int = _setting(1024 * 1024 * 1024,
        "Disk the spool may use before the gateway answers 503.")
    trusted_proxies: tuple[str, ...] = _setting((),
        "Comma-separated IPs/CIDRs whose X-Forwarded-For is believed.")
    worker_web_host: str = _setting("127.0.0.1",
        "Address a processor worker's web server listens on (0.0.0.0 in containers).")
    worker_web_port: int = _setting(6066,
        "Web port of a processor worker (profile lookups, faust's own views).")
    commit_interval_ms: int = _setting(2000,
        "How often a worker writes its tables' changes and commits offsets: longer means "
        "fewer changelog and profile messages, and more to read again after a crash.")
    worker_token: str = field(default="", repr=False, metadata={"doc":
        "Token a worker's lookups ask for (`Authorization: Bearer`); required when the "
        "worker listens beyond loopback (its lookups answer emails and ids)."})
    worker_url: str = _setting("",
        "Where the triggers service looks profiles up; empty: the local worker web port.")
    webhook_timeout_ms: int = _setting(5000,
        "How long one webhook attempt may take before it counts as failed.")
    webhook_attempts: int = _setting(6,
        "Attempts per webhook firing before it goes to the dead-letter topic.")
    webhook_backoff_ms: int = _setting(1000,
        "Wait after a webhook's first failed attempt; doubled after each further one.")
    webhook_concurrency: int = _setting(4,
        "Webhook deliveries in flight per project, so one slow receiver never stalls others.")
    webhook_allow_networks: tuple[str, ...] = _setting((),
        "Comma-separated CIDRs webhooks may reach beyond the public internet (loopback, "
        "private and link-local addresses are refused otherwise).")
    triggers_web_host: str = _setting("127.0.0.1",
        "Address the triggers service serves its `/metrics` on (0.0.0.0 in containers).")
    triggers_web_port: int = _setting(6068,
        "Port the triggers service serves its `/metrics` on (taken: it runs without them).")
    admin_host: str = _setting("127.0.0.1",
        "Address of the live dashboard (`trackpipe dashboard`); off loopback it needs a token.")
    admin_port: int = _setting(8090,
        "Port of the live dashboard.")
    admin_token: str = _setting("",
        "Token the dashboard asks for (`?token=` or `Authorization: Bearer`); required when "
        "the dashboard listens beyond loopback.")
    metrics_targets: tuple[str, ...] = _setting((),
        "Comma-separated base URLs of gateways, workers and triggers services the dashboard "
        "scrapes (a name that resolves to several addresses is every replica); empty: the "
        "local gateway, worker and triggers service.")
    query_max_memory_bytes: int = _setting(1024 * 1024 * 1024,
        "Memory DuckDB may use for one `trackpipe query`; beyond, the query stops with an error.")
    query_timeout_ms: int = _setting(60_000,
        "How long one `trackpipe query` may run, reading its rows included; then it stops.")
    query_max_rows: int = _setting(10_000,
        "Rows `trackpipe query` prints before it stops with an error (`--max-rows` per query).")
    max_family_profiles: int = _setting(10_000,
        "Most profiles that merges join into one person in `trackpipe timeline` and `query`; "
        "beyond, the nearest are kept and the command says so.")
    city_database: str = _setting("",
        "Path of a city-level MaxMind-format database (`.mmdb`: DB-IP City Lite, GeoLite2-City, "
        "your own) you are licensed for; the workers then add region and city. Empty: country "
        "only, from the registries' data that comes with the `iptocc` package.")
    raw_partitions: int = _setting(12,
        "Partitions of the raw topic (bounds how many processors can share the work).")
    replication_factor: int = _setting(1,
        "Replication factor of created topics (3 for a 3-node cluster).")
    local_kafka_port: int = _setting(19092,
        "First broker port of the local Kafka (controller ports are +100).")
    local_kafka_nodes: int = _setting(1,
        "Nodes of the local Kafka started by `trackpipe up` / `make run`.")

    @property
    def bootstrap(self) -> str:
        """The configured cluster, else the local one `trackpipe kafka start` runs."""
        return self.kafka_bootstrap or local_bootstrap(self.local_kafka_port,
                                                       self.local_kafka_nodes)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def kafka_dir(self) -> Path:
        return self.data_dir / "kafka"

    @property
    def worker_base_url(self) -> str:
        return (self.worker_url or f"http://127.0.0.1:{self.worker_web_port}").rstrip("/")

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(p, strict=False) for p in self.trusted_proxies)

    @property
    def webhook_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(p, strict=False) for p in self.webhook_allow_networks)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Read every ``TRACKPIPE_<FIELD>`` variable; ``overrides`` win over the environment."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            name = ENV_PREFIX + f.name.upper()
            if name in env:
                values[f.name] = _convert(name, f.default, env[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = ("http_port", "worker_web_port", "ack_deadline_ms", "max_url_bytes",
                    "max_body_bytes", "max_push_lines", "max_push_expansion",
                    "push_expansion_floor_bytes", "max_header_bytes", "max_header_count",
                    "header_timeout_ms", "body_timeout_ms",
                    "max_connections", "commit_interval_ms", "spool_max_bytes",
                    "raw_partitions",
                    "webhook_timeout_ms", "webhook_attempts", "webhook_backoff_ms",
                    "webhook_concurrency", "triggers_web_port", "admin_port",
                    "replication_factor",
                    "query_max_memory_bytes", "query_timeout_ms", "query_max_rows",
                    "max_family_profiles",
                    "local_kafka_port", "local_kafka_nodes")
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be positive")
        if not 0 <= self.envelope_linger_ms < self.ack_deadline_ms:
            raise SettingsError(f"{ENV_PREFIX}ENVELOPE_LINGER_MS must be at least 0 and less "
                                f"than the ack deadline ({self.ack_deadline_ms} ms)")
        if self.max_push_expansion < MIN_PUSH_EXPANSION:
            raise SettingsError(f"{ENV_PREFIX}MAX_PUSH_EXPANSION must be at least "
                                f"{MIN_PUSH_EXPANSION}: a push line's own text may grow that "
                                "much in its record")
        if self.local_kafka_nodes not in (1, 3):
            raise SettingsError(f"{ENV_PREFIX}LOCAL_KAFKA_NODES must be 1 or 3")
        if not self.topic_prefix or any(c not in _TOPIC_CHARS for c in self.topic_prefix):
            raise SettingsError(
                f"{ENV_PREFIX}TOPIC_PREFIX may only hold letters, digits, '.', '_' and '-'")
        if not self.worker_token and not _loopback(self.worker_web_host):
            raise SettingsError(f"{ENV_PREFIX}WORKER_TOKEN must be set when a worker listens "
                                f"on {self.worker_web_host!r} (beyond loopback): its lookups "
                                "answer people's emails and ids")
        if not self.admin_token and not _loopback(self.admin_host):
            raise SettingsError(f"{ENV_PREFIX}ADMIN_TOKEN must be set when the dashboard listens "
                                f"on {self.admin_host!r} (beyond loopback)")
        if self.city_database and not Path(self.city_database).is_file():
            raise SettingsError(f"{ENV_PREFIX}CITY_DATABASE={self.city_database!r} is not a "
                                "file: point it at a MaxMind-format .mmdb database, or leave it "
                                "empty for country only")
        for name in ("trusted_networks", "webhook_networks"):
            try:
                getattr(self, name)
            except ValueError as exc:
                variable = {"trusted_networks": "TRUSTED_PROXIES",
                            "webhook_networks": "WEBHOOK_ALLOW_NETWORKS"}[name]
                raise SettingsError(f"{ENV_PREFIX}{variable}: {exc}") from None

    @property
    def scrape_targets(self) -> tuple[str, ...]:
        return self.metrics_targets or (f"http://127.0.0.1:{self.http_port}",
                                        self.worker_base_url,
                                        f"http://127.0.0.1:{self.triggers_web_port}")

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def local_bootstrap(port: int, nodes: int) -> str:
    """Where the local Kafka's brokers listen: ``port``, ``port + 1``, … on loopback."""
    return ",".join(f"127.0.0.1:{port + i}" for i in range(nodes))


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _convert(name: str, default: object, raw: str) -> object:
    try:
        if isinstance(default, bool):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, Path):
            return Path(raw)
        if isinstance(default, tuple):
            return tuple(p.strip() for p in raw.split(",") if p.strip())
        return raw.strip()
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {type(default).__name__}") from None


def documented_fields() -> list[tuple[str, str, str]]:
    """(variable, default, description) rows for the README's configuration table."""
    return [(ENV_PREFIX + f.name.upper(), repr(f.default), f.metadata["doc"])
            for f in dataclasses.fields(Settings)]
