"""Where a worker process's CPU goes, from a py-spy sample of it (``--format raw``): the table
``make profile-worker`` prints. Each sample is given to the first row whose frame it holds,
from the top: the stages' handling, the commit, the outputs, the rest (faust, mode, asyncio and
aiokafka around each event). Samples are CPU time (py-spy leaves idle threads out), so a row
over the records handled is µs a record."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

ROWS = (  # (row, the frames that put a sample in it), first match wins
    ("the visitors stage: deciding (VisitorsStage.decide)", ("VisitorsStage.decide",)),
    ("the visitors stage: journal (Journal.append)", ("Journal.append",)),
    ("the visitors stage: applying (day logs, tables, queueing outputs)",
     ("VisitorsStage._apply", "VisitorsStage.handle_raw")),
    ("the profiles stage", ("ProfilesStage.handle_changes", "ProfilesStage.handle_change")),
    ("the identities and quotas stages, rebinds, ticks",
     ("IdentitiesStage.handle_links", "QuotasStage.handle_counts",
      "VisitorsStage.handle_rebinds", "IdentitiesStage.handle_link", "QuotasStage.handle_count",
      "VisitorsStage.handle_rebind", "VisitorsStage.handle_tick")),
    ("the commit (checkpoint: fsyncs, index, changelogs, store)",
     ("Checkpoint.run", "Worker._commit_with_state", "flush_state_then_producer")),
    ("outputs (Outbound.flush, KafkaTransport)", ("Outbound.flush", "KafkaTransport.send")),
)
OUR_OWN = 5  # the first rows: the stages' own handling
OTHER = "faust, mode, asyncio and aiokafka around each event (the rest)"


def shares(raw: Path) -> Counter[str]:
    """Samples per row."""
    found: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = {frame.split(" (")[0] for frame in stack.split(";")}
        row = next((name for name, marks in ROWS if frames.intersection(marks)), OTHER)
        found[row] += int(count)
    return found


def table(columns: dict[str, tuple[Counter[str], int, int]]) -> str:
    """A Markdown table: for each column (name → (samples per row, records, sampling rate)),
    each row's share and µs a record."""
    names = list(columns)
    out = ["| where | " + " | ".join(f"{n}: share | {n}: µs a record" for n in names) + " |",
           "|---|" + "---:|---:|" * len(names)]
    for row in [name for name, _ in ROWS] + [OTHER]:
        cells = []
        for samples, records, rate in columns.values():
            total = sum(samples.values()) or 1
            cells += [f"{100 * samples[row] / total:.1f} %",
                      f"{samples[row] / rate / records * 1e6:.1f}"]
        out.append(f"| {row} | " + " | ".join(cells) + " |")
    cells = []
    for samples, records, rate in columns.values():
        outside = sum(v for k, v in samples.items()
                      if k not in {name for name, _ in ROWS[:OUR_OWN]})
        cells += [f"{100 * outside / (sum(samples.values()) or 1):.1f} %",
                  f"{outside / rate / records * 1e6:.1f}"]
    out.append("| **outside the stages' own handling** | " + " | ".join(cells) + " |")
    return "\n".join(out)
