"""The errors a user can cause, under one base so the CLI catches them once.

Every `RnnerError` is a one-line message that says what to fix (`path:line: what is wrong`,
`config KEY: what is wrong`), printed without a traceback. Errors that mean a bug in rnner
stay ordinary Python exceptions. Some classes are also `ValueError`s because callers caught
them as such before they had a common base.
"""

from __future__ import annotations

import os


class RnnerError(Exception):
    """A problem the user can fix; its message is the whole story."""


class InputError(RnnerError):
    """A problem in a user's input file, reported as `path:line: message` (no traceback)."""

    def __init__(self, path: str | os.PathLike[str] | None, line: int | None, message: str):
        super().__init__(path, line, message)  # keeps the error picklable
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.message = message

    def __str__(self) -> str:
        if self.path is None:
            where = "" if self.line is None else f"line {self.line}"
        else:
            where = self.path if self.line is None else f"{self.path}:{self.line}"
        return f"{where}: {self.message}" if where else self.message


class ScoreInputError(InputError, ValueError):
    """Bad scorer (conlleval) input, located by path and 1-based line."""


class ConfigError(RnnerError, ValueError):
    """A bad config value, reported as `config key: what is wrong`."""

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"config {key}: {message}")


class RunDirError(RnnerError, ValueError):
    """A run directory that cannot be loaded safely."""


class DataError(RnnerError):
    """A dataset is unknown, missing, or not the expected file; the message says what to do."""


class DataNotFoundError(DataError):
    pass


class ChecksumError(DataError):
    pass


class DownloadError(DataError):
    pass
