"""Text generators: llama.cpp in-process (``local``) or any OpenAI-compatible server (``remote``)."""
from __future__ import annotations

from ..progress import Progress, no_progress
from ..settings import Settings
from .base import Completion, Generator, as_messages, text_completer


def get_generator(settings: Settings, progress: Progress = no_progress) -> Generator:
    """The generator ``settings.generator`` names. Local models load lazily on first use."""
    if settings.generator == "remote":
        from .remote import RemoteGenerator

        return RemoteGenerator(settings)
    from .local import LocalGenerator

    return LocalGenerator(settings, progress)


__all__ = ["Completion", "Generator", "as_messages", "get_generator", "text_completer"]
