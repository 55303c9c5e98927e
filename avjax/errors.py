"""Errors that are the user's to fix: missing data or weights, a bad flag, a workdir of another config, bad media.

`python -m avjax.main` prints their message (which says what to change) and exits with status 2, without a
traceback; any other exception is a bug and keeps its traceback. They subclass the built-in error a library
caller would expect (ValueError, FileNotFoundError), so `except ValueError` keeps working.
"""


class UsageError(Exception):
    """A problem with what the user asked for or gave, not with avjax."""


class ConfigError(UsageError, ValueError):
    """A config that cannot run: an unknown variant or field, a combination that does not exist, a workdir that
    holds another config's checkpoints."""


class MissingInput(UsageError, FileNotFoundError):
    """Data, weights or a file the run needs is not there."""
