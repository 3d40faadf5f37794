"""Error types. Every user-facing error names the file, field or value and the problem."""

from __future__ import annotations


class NasError(Exception):
    """Base class of the errors this package raises on purpose."""


class UserError(NasError, ValueError):
    """Bad input from the user (a file, a flag, a value). The CLI prints it and exits 2."""


class DataError(UserError):
    """A dataset or feature directory is invalid (names the file and the problem)."""


class SpaceError(UserError):
    """A search-space file is invalid (names the file, the dimension and the problem)."""


class TrainingFailed(NasError):
    """Training could not go on (NaN/inf loss, ...). The message says where and why."""


class SearchStopped(NasError):
    """The search stopped on an infrastructure fault (database gone, disk full, Ray head
    lost) with everything finished recorded; running the same command again resumes.
    The CLI prints the one-line message and exits 75 (EX_TEMPFAIL)."""

    exit_code = 75
