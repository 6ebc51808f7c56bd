"""Clinidoc's assistant and its two faces, the browser UI and the command line.

Nothing may leave the machine. These switches must be set before gradio or huggingface_hub is first
imported (both read them at import time), and every entry point imports this package first.
"""

import os

os.environ.update(
    GRADIO_ANALYTICS_ENABLED="False",
    HF_HUB_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    TRANSFORMERS_OFFLINE="1",
)
