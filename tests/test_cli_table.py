"""The CLI's one table of commands: `rnner --help` lists them all without importing the
modules behind them, and each command's full parser agrees with its row."""

import subprocess
import sys

import pytest

from rnner import cli


def test_help_lists_every_command_without_importing_them():
    code = (
        "import sys\nfrom rnner.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'rnner.tune', 'rnner.report', 'rnner.bench',"
        " 'rnner.training', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    for name in cli.COMMANDS:
        assert f"    {name} " in out or f"    {name}\n" in out, name
    assert out.splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_each_row_builds_its_command_with_the_same_help_and_a_cmd_function(name):
    parser = cli.build_parser(name)
    sub = next(a for a in parser._actions if a.dest == "command")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert helps[name] == cli.COMMANDS[name][0]
    command = sub.choices[name]
    if name == "data":  # a group: its own subcommands carry the function
        command = next(a for a in command._actions if a.dest == "data_command").choices["download"]
    assert command.get_default("func").__name__ == f"cmd_{name}"
