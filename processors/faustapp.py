"""The faust side of a worker: its app's settings, its tables in RocksDB, its web server.

Everything here is configuration with a reason beside it; ``processors.worker`` wires the
stages to what this builds.
"""

from __future__ import annotations

import hmac
import socket
from typing import Any

import faust
from faust.types import TP

from processors.pipeline import STATE
from runtime.settings import Settings
from schemas import envelope, topics

# A worker has a database per table and partition (60 with 12 partitions), and each has its
# own write buffers and block cache: faust's defaults (a 2 GiB block cache, 500 MiB
# compressed, 3 × 64 MiB write buffers, each per database) let one worker grow to 2.4 GB with
# a million visitors, 4 + 4 + 8 MiB a database to 2.0 GB. Reads of hot keys are served by the
# tables' own cache of decoded values (processors.state), so a database keeps 2 MiB of blocks
# and two 2 MiB write buffers: at most 6 MiB each. They are table options: faust ignores an
# App-level `rocksdb_options`.
ROCKSDB = {"write_buffer_size": 2 * 1024 * 1024, "max_write_buffer_number": 2,
           "block_cache_size": 2 * 1024 * 1024,
           "target_file_size_base": 32 * 1024 * 1024}



RAW = {"key_serializer": "raw", "value_serializer": "raw"}  # the stages decode what they read


def make_app(settings: Settings, bootstrap: str, web_port: int) -> faust.App:
    return faust.App(
        settings.topic_prefix + "processors",
        broker=[f"kafka://{server}" for server in bootstrap.split(",")],
        # Tables on local disk: a restarted worker reads only the changelog written since
        # (docs/benchmarks.md: a million visitors took minutes to recover in memory), and
        # memory holds what is used, not every visitor (ROCKSDB, given to each table).
        store="rocksdb://",
        processing_guarantee="at_least_once",
        topic_partitions=settings.raw_partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1, producer_max_batch_size=envelope.MAX_BYTES,
        producer_max_request_size=topics.MAX_MESSAGE_BYTES,
        broker_commit_interval=settings.commit_interval_ms / 1000,
        # faust binds web_bind (its default 0.0.0.0) and only advertises web_host: bound
        # where the settings say, which is what they checked needs no token. env={}: faust
        # would otherwise let WEB_BIND, WEB_PORT and the like in the environment override
        # these arguments, unchecked; the settings are the one source.
        web_enabled=True, web_bind=settings.worker_web_host, env={},
        web_host=settings.worker_web_host, web_port=web_port,
        canonical_url=f"http://{advertised_host(settings.worker_web_host)}:{web_port}",
        # the tables' databases: one per table partition, locked by the worker that holds
        # it, so the workers of one host can share the folder, and a worker started again
        # finds what it had
        datadir=str(settings.data_dir / "processors" / "state"),
        table_standby_replicas=0,
        # a crashed worker's partitions move after 10 s, not faust's default minute
        broker_session_timeout=10.0, broker_heartbeat_interval=1.0,
        # faust's repaired Cython fast paths: a quarter more events a second here
        # (docs/benchmarks.md); each agent has one channel, where they change nothing else
        cython_optimizations=True,
        web_application_options={"middlewares": [token_required(settings.worker_token)]},
    )


def make_tables(app: faust.App, settings: Settings) -> dict[str, Any]:
    """faust's table of each of ``STATE``, its changelog checked against ``schemas.topics``
    at boot like every topic. The profiles table's changelog is the public profiles topic:
    each profile is published once, as its table's change."""
    options = {"default": None, "partitions": settings.raw_partitions, "key_type": bytes,
               "value_type": bytes, "options": dict(ROCKSDB)}
    profiles_topic = app.topic(settings.topic(topics.PROFILES), **RAW,
                               partitions=settings.raw_partitions, compacting=True,
                               acks=False, internal=True)
    tables = {name: app.Table(name, **options, **(
        {"changelog_topic": profiles_topic} if name == "profiles" else {})) for name in STATE}
    declared = {settings.topic(spec.name) for spec in topics.TOPICS}
    for table in tables.values():
        name = table.changelog_topic.get_topic_name()
        if name not in declared:
            raise RuntimeError(f"{name} is missing from schemas.topics")
    return tables


class RocksStore:
    """faust's RocksDB store as ``processors.state`` uses it. faust keeps one database per
    table partition (``_dbs``, the partitions this worker holds) and takes a write's partition
    from the event being handled; the stages write at the flush before a commit, where there
    is none, so the partition is given. A write for a partition this worker no longer holds
    (revoked just before that flush) is left to the changelog, which its next owner reads:
    opening the database again would take its lock from that owner."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def get(self, key: bytes) -> bytes | None:
        return self.store.get(key)  # the handled event's partition, else every partition's

    def put(self, key: bytes, value: bytes, partition: int) -> None:
        db = self.store._dbs.get(partition)
        if db is not None:
            db.put(key, value)

    def delete(self, key: bytes, partition: int) -> None:
        db = self.store._dbs.get(partition)
        if db is not None:
            db.delete(key)

    def items(self, partition: int | None = None) -> Any:
        """With ``partition``, only its database (none while this worker does not hold it)."""
        if partition is None:
            return self.store.items()
        db = self.store._dbs.get(partition)
        return iter(()) if db is None else self.store._visible_items(db)

    def persisted(self, tp: TP, offset: int) -> None:
        """faust recovers a partition from the offset its database says it holds."""
        if tp.partition in self.store._dbs:
            self.store.set_persisted_offset(tp, offset)


def advertised_host(bind_host: str) -> str:
    """The address other workers reach this one at (faust redirects table lookups there):
    the bind address, or this host's own address when bound to every interface; an IPv6
    address in brackets, as a URL holds it."""
    if bind_host in ("0.0.0.0", "::", ""):
        return socket.gethostbyname(socket.gethostname())
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def token_required(token: str) -> Any:
    """aiohttp middleware: with a token set, every page but ``/metrics`` asks for it
    (``Authorization: Bearer``, or ``?token=``): the lookups answer people's emails and ids,
    and faust's own pages show tables. faust forwards a routed lookup with its headers."""
    from aiohttp import web

    @web.middleware
    async def middleware(request: Any, handler: Any) -> Any:
        if token and request.path != "/metrics":
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            given = given or request.query.get("token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return web.Response(status=401, text="this worker asks for its token "
                                    "(TRACKPIPE_WORKER_TOKEN, as Authorization: Bearer)\n")
        return await handler(request)

    return middleware
