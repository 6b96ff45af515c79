"""The CLI's own documentation: every command says what it does and shows an example, every
option has help text, and --version answers."""

import argparse

import pytest

from trackpipe.cli import build_parser


def commands(parser, path=()):
    """(path, parser) of every command that runs something."""
    for action in parser._actions:  # argparse offers no public walk of its subcommands
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))
    if parser.get_default("handler"):
        yield path, parser


ALL = list(commands(build_parser()))


def test_every_group_of_the_cli_is_there():
    assert {path[0] for path, _ in ALL} == {
        "up", "gateway", "worker", "dashboard", "projects", "triggers", "logs", "profile",
        "timeline", "query", "kafka", "topics", "warnings", "deadletters", "demo"}


@pytest.mark.parametrize("path, parser", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_command_has_a_summary_an_example_and_help_on_every_option(path, parser):
    assert parser.description and "\n" not in parser.description
    example = parser.epilog.split("\n")[1].split()
    assert parser.epilog.startswith("example:\n  ") and "trackpipe" in example[:2], example
    assert example[example.index("trackpipe") + 1] == path[0]  # an example of this command
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help, f"{' '.join(path)}: {action.dest} has no help text"


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("trackpipe ")
