"""Serving the page on this machine only."""

from app.assistant import Assistant
from app.settings import Settings
from app.ui.page import Page
from app.ui.theme import CSS, THEME


def serve(assistant: Assistant, settings: Settings) -> None:
    """Serve until interrupted. Blocks the calling thread."""
    page = Page(assistant, settings.max_upload_bytes, settings.max_batch, settings.uploads_dir / "exports")
    # Only the page may call its events; no public API on patient data.
    page.blocks.queue(api_open=False, default_concurrency_limit=1)
    page.blocks.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=False,
        ssr_mode=False,  # server-side rendering would need a Node server beside this one
        theme=THEME,
        css=CSS,
        max_file_size=settings.max_upload_bytes,
        footer_links=[],
        enable_monitoring=False,
        show_error=True,
    )
