"""The browser UI: a Gradio page split into panels, each a small class that calls app.assistant."""

from app.ui.serve import serve

__all__ = ["serve"]
