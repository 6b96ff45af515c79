"""The compose file may only set settings that exist, and only run commands the CLI has."""

from pathlib import Path

import yaml

from trackpipe.cli import build_parser
from trackpipe.settings import documented_fields

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
        if "command" in service:
            parser.parse_args(service["command"])  # exits (fails the test) on an unknown one


def test_every_processor_table_has_its_changelog_in_the_topic_table():
    from processors.app import Processors
    from trackpipe.settings import Settings

    Processors(Settings(kafka_bootstrap="127.0.0.1:1"), "127.0.0.1:1", 6066)  # raises if not
