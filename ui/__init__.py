"""bookqa's web UI (Gradio). It depends on bookqa's public API; bookqa never imports it (the ``bookqa ui``
command imports it lazily)."""
from __future__ import annotations

__all__ = ["build_app", "launch"]


def __getattr__(name: str):
    # gradio takes seconds to import: load it only when the app is actually built
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
