"""The compose file may only set settings that exist, and only run commands the CLI has;
Grafana's panels and Prometheus's alert rules only ask for metrics a service exports."""

import json
import re
from pathlib import Path

import yaml

from runtime.settings import documented_fields
from trackpipe.cli import build_parser

ROOT = Path(__file__).parents[2]


def compose_services():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_compose_sets_only_known_settings():
    known = {variable for variable, _, _ in documented_fields()}
    for name, service in compose_services().items():
        for variable in service.get("environment", {}):
            if variable.startswith("TRACKPIPE_"):
                assert variable in known, f"{name} sets unknown {variable}"


def test_compose_commands_exist_in_the_cli():
    parser = build_parser()
    for service in compose_services().values():
        if "command" in service and service["image"] == "trackpipe:local":
            parser.parse_args(service["command"])  # exits (fails the test) on an unknown one


def test_every_processor_table_has_its_changelog_in_the_topic_table():
    from processors.worker import Worker
    from runtime.settings import Settings

    worker = Worker(Settings(kafka_bootstrap="127.0.0.1:1"), "127.0.0.1:1", 6066)  # raises
    # faust recovers every table from bytes: a serializer would hand the stages decoded values
    assert {(t.changelog_topic.key_serializer, t.changelog_topic.value_serializer)
            for t in worker.faust_tables.values()} == {("raw", "raw")}


def test_the_cluster_is_three_kraft_brokers_that_keep_two_copies_in_sync():
    services = compose_services()
    brokers = {name: s for name, s in services.items() if s.get("image", "").startswith(
        "trackpipe/kafka:")}
    assert sorted(brokers) == ["kafka-1", "kafka-2", "kafka-3"]
    for broker in brokers.values():
        env = broker["environment"]
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert "healthcheck" in broker
    assert services["topics"]["environment"]["TRACKPIPE_REPLICATION_FACTOR"] == "3"


def test_gateways_trust_forwarded_for_from_nginx_only():
    services = compose_services()
    nginx_ip = services["nginx"]["networks"]["backend"]["ipv4_address"]
    assert services["gateway"]["environment"]["TRACKPIPE_TRUSTED_PROXIES"] == nginx_ip
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf


def test_roles_scale_by_replicas_and_observability_is_a_profile():
    services = compose_services()
    assert services["gateway"]["deploy"]["replicas"] == 2
    assert services["processors"]["deploy"]["replicas"] == 3
    for name in ("gateway", "processors"):
        assert "container_name" not in services[name] and "healthcheck" in services[name]
        assert not any(":" in str(p) for p in services[name].get("ports", []))  # scalable
    assert services["dashboard"]["profiles"] == ["observability"]
    assert services["grafana"]["profiles"] == ["grafana"]  # its image is only on Docker Hub
    assert "profiles" not in services["prometheus"]


def exported_families() -> set[str]:
    """Every metric family a trackpipe service serves, read from the ``# TYPE`` lines of what
    each one renders (a family is typed even while it has no sample); a histogram's series
    (``_bucket``, ``_sum``, ``_count``) by their own names too."""
    from gateway.metrics import Metrics
    from processors.metrics import WorkerMetrics
    from triggers.metrics import TriggersMetrics

    text = Metrics().render() + WorkerMetrics().render({}) + TriggersMetrics({}).render()
    families = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        families.add(name)
        if kind == "histogram":
            families |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return families


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every Grafana panel's target and every alert rule."""
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/trackpipe.json").read_text())
    return ([(f"panel {panel['title']!r}", target["expr"])
             for panel in dashboard["panels"] for target in panel["targets"]]
            + [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()])


def test_the_exported_families_are_read_from_every_service():
    families = exported_families()
    assert {"trackpipe_gateway_requests_total", "trackpipe_gateway_ack_seconds_bucket",
            "trackpipe_worker_consumer_lag_seconds", "trackpipe_triggers_webhook_failures_total",
            "trackpipe_warnings_total"} <= families
    assert "trackpipe_worker_consumer_lag_seconds_bucket" not in families  # a gauge


def test_grafana_and_the_alert_rules_only_ask_for_metrics_some_service_exports():
    families = exported_families()
    asked = [(where, name) for where, expr in queries()
             for name in re.findall(r"\btrackpipe_[a-z0-9_]+", expr)]
    assert asked and all(name in families for _, name in asked), [
        f"{where}: {name}" for where, name in asked if name not in families]


def test_grafana_shows_lag_in_seconds_warnings_by_kind_and_webhook_failures():
    exprs = [expr for where, expr in queries() if where.startswith("panel")]
    for metric in ("trackpipe_worker_consumer_lag_seconds", "trackpipe_warnings_total",
                   "trackpipe_triggers_webhook_failures_total"):
        assert any(metric in expr for expr in exprs), metric
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/trackpipe.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    spots = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(spots) == len(set(spots))  # no panel drawn over another


def test_one_alert_rule_fires_on_consumer_lag_above_30_seconds():
    rules = alert_rules()
    assert [rule["alert"] for rule in rules] == ["TrackpipeConsumerLagAbove30s"]
    (rule,) = rules
    assert re.fullmatch(r"max by \(partition\) \(trackpipe_worker_consumer_lag_seconds\) > 30",
                        rule["expr"])
    assert rule["for"] == "1m" and "partition" in rule["annotations"]["summary"]


def test_prometheus_loads_the_alert_rules_the_image_holds():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]  # beside prometheus.yml, here and in the image
    dockerfile = (ROOT / "deploy" / "prometheus" / "Dockerfile").read_text()
    assert "COPY deploy/alerts.yml /etc/prometheus/alerts.yml" in dockerfile
    assert "--config.file=/etc/prometheus/prometheus.yml" in dockerfile


def test_nginx_never_resends_a_request_to_another_gateway_and_hides_metrics():
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "proxy_next_upstream off;" in conf
    assert "location = /metrics {\n        return 404;" in conf


def test_every_port_is_published_on_loopback_only():
    for name, service in compose_services().items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port}"


def test_the_images_are_those_make_images_builds_with_the_launchers_kafka():
    from trackpipe.kafka.launcher import KAFKA_VERSION

    built = {"trackpipe:local", f"trackpipe/kafka:{KAFKA_VERSION}", "trackpipe/nginx:local",
             "trackpipe/prometheus:local"}
    script = (ROOT / "scripts" / "images.sh").read_text()
    for tag in built - {f"trackpipe/kafka:{KAFKA_VERSION}"}:
        assert f"build {tag} " in script
    assert 'build "trackpipe/kafka:$KAFKA_VERSION" ' in script
    for name, service in compose_services().items():
        if name != "grafana":  # Docker Hub's, behind its own profile
            assert service["image"] in built, f"{name}: {service['image']}"
            assert "build" not in service, name


def test_nginx_keeps_its_address_outside_the_range_given_to_replicas():
    import ipaddress

    services = compose_services()
    network = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["networks"]["backend"]
    pool = network["ipam"]["config"][0]
    nginx_ip = ipaddress.ip_address(services["nginx"]["networks"]["backend"]["ipv4_address"])
    assert nginx_ip in ipaddress.ip_network(pool["subnet"])
    assert nginx_ip not in ipaddress.ip_network(pool["ip_range"])


def test_prometheus_scrapes_every_role_that_serves_metrics():
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())["scrape_configs"]
    found = set()
    for job in scrape:
        for sd in job.get("dns_sd_configs", []):
            found |= {f"{n}:{sd['port']}" for n in sd["names"]}
        for static in job.get("static_configs", []):
            found |= set(static["targets"])
    assert {"gateway:8080", "processors:6066", "triggers:6068", "kafka-1:7071", "kafka-2:7071",
            "kafka-3:7071", "nginx-exporter:9113"} <= found
