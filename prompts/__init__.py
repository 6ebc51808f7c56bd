"""The words the model sees: versioned prompt templates and the safety disclaimer."""

from prompts.render import PromptMessage, RenderedPrompt, disclaimer, render

__all__ = ["PromptMessage", "RenderedPrompt", "disclaimer", "render"]
