"""What a clinician is told when the model fails, and what the operator's log keeps.

The engine's errors are written for whoever runs the model server: its address, its HTTP status, its own words.
A clinician needs to know what happened to their work and what to do next; the operator's detail goes to the
server's log under the `clinidoc` logger, where IT looks when a clinician reports the message.
"""

from __future__ import annotations

import logging
from typing import Literal

from engine import EngineError, ModelBrokeOff, ModelTimedOut, ModelUnreachable, PromptTooLong

log = logging.getLogger("clinidoc")

# What the failed work was: the words for it in a sentence.
Work = Literal["question", "summary", "upload", "session", "check", "trends"]
# For each, what was not done, and how to do it again.
_WORDS: dict[Work, tuple[str, str]] = {
    "question": ("this question was not answered", "Ask it again"),
    "summary": ("the summary was not made", "Summarise again"),
    "upload": ("this upload was not stored", "Upload the files again"),
    "session": ("the session could not be shown", "Open it again"),
    "check": ("the text was not checked", "Check it again"),
    "trends": ("the results over time could not be drawn", "Open them again"),
}
_TELL_IT = "if it keeps happening, tell your IT service desk, who will find the details in Clinidoc's log."


def told(error: EngineError, work: Work) -> str:
    """The clinician's words for a failure of the model during `work`, the operator's detail logged."""
    log.error("The model failed (%s): %s: %s", work, type(error).__name__, error)
    not_done, again = _WORDS[work]
    if isinstance(error, PromptTooLong):
        return (
            f"This is too long for the model to read at once ({error.prompt_tokens:,} tokens with the record and "
            f"the conversation so far; it reads {error.context_window - error.max_new_tokens:,}), so {not_done}. "
            "Ask a shorter question, or start a new session with fewer documents."
        )
    if isinstance(error, ModelUnreachable):
        return f"Clinidoc could not reach its model server, so {not_done}. {again} in a few minutes; {_TELL_IT}"
    if isinstance(error, ModelTimedOut):
        return (
            f"The model server did not answer in time (it may be overloaded), so {not_done}. "
            f"{again} in a few minutes; {_TELL_IT}"
        )
    if isinstance(error, ModelBrokeOff):
        return (
            f"The model server stopped in the middle of its work, so {not_done}; nothing it had written is kept. "
            f"{again}; {_TELL_IT}"
        )
    return f"The model failed, so {not_done}. {again}; {_TELL_IT}"
