"""Every command's --help starts from examples (clig.dev), and usage errors are one-liners."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from apsis_cli.apsis import cli as apsis_cli
from apsis_cli.apsisctl import cli as apsisctl_cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += _commands(command, (*prefix, name))
    return found


@pytest.mark.parametrize("group,path", [(apsis_cli, p) for p in _commands(apsis_cli)]
                         + [(apsisctl_cli, p) for p in _commands(apsisctl_cli)],
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else v.name)
def test_help_has_examples(group, path):
    result = CliRunner().invoke(group, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"{' '.join(path)} --help has no examples"


def test_spec_commands_exist():
    names = set(apsis_cli.commands)
    assert names >= {"jobs", "job", "runs", "show", "run", "schedule", "adhoc", "wait", "output",
                     "log", "skip", "start", "stop", "rerun", "signal", "mark", "backfill",
                     "events", "tui"}
    assert set(apsisctl_cli.commands) >= {"serve", "check-job", "schema", "reload", "sanity",
                                          "db", "shutdown", "version"}
    assert set(apsisctl_cli.commands["db"].commands) == {"migrate", "check", "archive", "vacuum",
                                                         "copy"}
