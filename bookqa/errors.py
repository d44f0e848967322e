"""Errors a user can act on. The CLI prints their message on one line and exits non-zero;
anything else is a bug and keeps its traceback."""


class BookQAError(Exception):
    """Base class: the message is meant for the user, one line, no traceback."""


class ConfigError(BookQAError):
    """A setting, flag or environment variable has an invalid value."""


class InputError(BookQAError):
    """The input file (or dataset record) cannot be used: empty, binary, undecodable, too large..."""


class NotFoundError(BookQAError):
    """A book, chunk or file that was named does not exist."""


class AmbiguousNameError(BookQAError):
    """A book name matches several books."""


class ModelError(BookQAError):
    """A model cannot be found, assembled or verified."""


class GeneratorError(BookQAError):
    """The text generator failed (unreachable server, timeout, bad response)."""
