"""The day logs on disk: a contract between floors, like the topics in ``schemas``.

The processors write them (``processors.daylog``, ``processors.timeline``); the read commands
(``trackpipe logs``, ``timeline``, ``query``) and retention read them. This package owns what
both sides must agree on, and the reading: where files are and what they are called
(``layout``), what a line is (``lines``), reading lines in receipt order (``reading``), the
timeline index's schema and lookups (``timeline``), the SQL views (``sql``) and which days a
project's retention has passed (``retention``). It imports ``schemas`` and ``runtime`` only.
"""
