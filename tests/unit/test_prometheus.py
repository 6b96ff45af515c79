"""The exposition format both ways, and the quantiles the dashboard shows."""

import math

import pytest

from gateway.metrics import Metrics
from processors.metrics import WorkerMetrics
from runtime import prometheus as prom


def test_gateway_metrics_read_back():
    m = Metrics()
    for status in (200, 200, 202):
        m.count("ce", status)
    m.count("ping", 403)
    for seconds in (0.002, 0.004, 0.02, 2.0):
        m.observe_ack(seconds)
    m.spool_depth = 7
    series = prom.parse(m.render())
    assert prom.total(series, "trackpipe_gateway_requests_total") == 4
    assert prom.by_label(series, "trackpipe_gateway_requests_total", "status") == {
        "200": 2, "202": 1, "403": 1}
    assert prom.total(series, "trackpipe_gateway_requests_total", endpoint="ce") == 3
    assert prom.total(series, "trackpipe_gateway_spool_depth") == 7
    buckets = prom.histogram_buckets(series, "trackpipe_gateway_ack_seconds")
    assert buckets[math.inf] == 4 and buckets[0.0025] == 1 and buckets[0.005] == 2


def test_worker_metrics_read_back_with_awkward_label_values():
    w = WorkerMetrics()
    w.actions['we"ird\\name'] += 3
    w.records["ce"] += 3
    w.open_visits = {0: 2, 5: 1}
    w.visit_opened(5, -1)
    w.visit_opened(9, 1)  # a partition not counted yet: left to the rebuild
    series = prom.parse(w.render({0: 10, 5: 0}))
    assert prom.by_label(series, "trackpipe_worker_actions_total", "project") == {
        'we"ird\\name': 3}
    assert prom.total(series, "trackpipe_worker_open_visits") == 2
    assert prom.by_label(series, "trackpipe_worker_consumer_lag", "partition") == {
        "0": 10, "5": 0}


def test_samples_of_several_processes_add_up():
    a = prom.parse('x_total{p="a"} 2\nx_total{p="b"} 1\n')
    b = prom.parse('x_total{p="a"} 5\n# a comment\nnot a sample\n')
    merged = {}
    for series in (a, b):
        for key, value in series.items():
            merged[key] = merged.get(key, 0) + value
    assert prom.by_label(merged, "x_total", "p") == {"a": 7, "b": 1}


@pytest.mark.parametrize(("q", "expected"), [(0.5, 0.0075), (0.99, 0.0196), (0.25, 0.005)])
def test_quantiles_interpolate_within_the_bucket(q, expected):
    buckets = {0.005: 25.0, 0.01: 75.0, 0.02: 100.0, math.inf: 100.0}
    assert prom.quantile(buckets, q) == pytest.approx(expected, rel=0.01)


def test_quantile_edge_cases():
    assert prom.quantile({}, 0.5) is None
    assert prom.quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None
    assert prom.quantile({0.1: 0.0, math.inf: 4.0}, 0.5) == 0.1  # all above the last bound
