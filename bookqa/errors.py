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


class BrokenBookError(BookQAError):
    """A stored book's files are damaged or missing. The message names what is wrong and the command that
    repairs it; ``broken`` is the ``store.BrokenBook`` record that says the same for listings."""

    def __init__(self, message: str, broken=None):
        super().__init__(message)
        self.broken = broken


class StorageError(BookQAError):
    """The library's home cannot be written (permissions, a read-only or full disk), or a book is busy."""
