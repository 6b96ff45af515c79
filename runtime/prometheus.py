"""The Prometheus text format, both ways: what gateways and workers expose on ``/metrics``, and
what the dashboard reads back from them. Pure; no client library (a scrape needs nothing more).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Iterable, Mapping

Labels = Mapping[str, object]
Sample = tuple[Labels, float]


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def family(name: str, kind: str, text: str, samples: Iterable[Sample]) -> list[str]:
    """One metric family: HELP, TYPE and a line per sample."""
    return [f"# HELP {name} {text}", f"# TYPE {name} {kind}",
            *(f"{name}{_labels(labels)} {_number(value)}" for labels, value in samples)]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str, text: str) -> list[str]:
        out = [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
        cumulative = 0
        for bound, n in zip((*self.buckets, "+Inf"), self.counts, strict=True):
            cumulative += n
            out.append(f'{name}_bucket{{le="{bound}"}} {cumulative}')
        return out + [f"{name}_sum {self.sum}", f"{name}_count {cumulative}"]


_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

_UNESCAPE = re.compile(r"\\(.)")


def _unescape(match: re.Match[str]) -> str:
    return "\n" if match.group(1) == "n" else match.group(1)


Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Series:
    """Samples of an exposition by (name, labels); comments and unreadable lines are skipped."""
    series: Series = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        found = frozenset((k, _UNESCAPE.sub(_unescape, v))
                          for k, v in _LABEL.findall(labels or ""))
        series[(name, found)] = series.get((name, found), 0.0) + number
    return series


def total(series: Series, name: str, **match: str) -> float:
    """The sum of a metric's samples whose labels include ``match``."""
    wanted = set(match.items())
    return sum(v for (n, labels), v in series.items() if n == name and wanted <= labels)


def by_label(series: Series, name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for (n, labels), value in series.items():
        if n == name:
            key = dict(labels).get(label)
            if key is not None:
                out[key] = out.get(key, 0.0) + value
    return out


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """The ``q`` quantile of a histogram from its cumulative buckets (upper bound → count),
    interpolated within the bucket like PromQL's ``histogram_quantile``; None without data."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    previous_bound, previous_count = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return previous_bound
            if count == previous_count:
                return bound
            return previous_bound + (bound - previous_bound) * (
                (rank - previous_count) / (count - previous_count))
        previous_bound, previous_count = bound, count
    return previous_bound


def histogram_buckets(series: Series, name: str) -> dict[float, float]:
    """Cumulative buckets of a histogram, summed over every sample (e.g. several gateways)."""
    found: dict[float, float] = {}
    for (n, labels), value in series.items():
        if n == name + "_bucket":
            le = dict(labels).get("le")
            if le is not None:
                bound = math.inf if le == "+Inf" else float(le)
                found[bound] = found.get(bound, 0.0) + value
    return found
