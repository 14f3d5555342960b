"""The user-error classes share one base, which the CLI catches once."""

import pickle

import pytest

from rnner import errors
from rnner.config import ConfigError
from rnner.conll import InputError
from rnner.data import ChecksumError, DataError, DataNotFoundError, DownloadError
from rnner.metrics import ScoreInputError
from rnner.predict import RunDirError


@pytest.mark.parametrize(
    "cls",
    [
        InputError,
        ConfigError,
        DataError,
        DataNotFoundError,
        ChecksumError,
        DownloadError,
        RunDirError,
        ScoreInputError,
    ],
)
def test_every_user_error_is_an_rnner_error(cls):
    assert issubclass(cls, errors.RnnerError)


def test_old_locations_name_the_same_classes():
    assert (InputError, ConfigError, DataError, RunDirError, ScoreInputError) == (
        errors.InputError,
        errors.ConfigError,
        errors.DataError,
        errors.RunDirError,
        errors.ScoreInputError,
    )


def test_value_error_callers_still_catch_config_run_dir_and_score_errors():
    for cls in (ConfigError, RunDirError, ScoreInputError):
        assert issubclass(cls, ValueError)


def test_score_input_error_reads_path_line_and_survives_pickling():
    e = ScoreInputError("gold.txt", 3, "expected at least 2 columns")
    assert str(e) == "gold.txt:3: expected at least 2 columns"
    assert str(ScoreInputError("gold.txt", None, "no sentences found")) == (
        "gold.txt: no sentences found"
    )
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), str(back), back.line) == (ScoreInputError, str(e), 3)


def test_cli_reports_any_rnner_error_as_one_line(monkeypatch, capsys):
    from rnner import cli

    class Odd(errors.RnnerError):
        pass

    def boom(args):
        raise Odd("somewhere: something to fix")

    monkeypatch.setattr(cli, "cmd_score", boom)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda *a: _with_func(parser(*a), boom))
    assert cli.main(["score", "x"]) == 2
    assert capsys.readouterr().err == "somewhere: something to fix\n"


def _with_func(parser, func):
    parser.set_defaults(func=func)
    sub = parser._subparsers._group_actions[0].choices["score"]
    sub.set_defaults(func=func)
    return parser
