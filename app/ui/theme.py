"""The page's look. Fonts are system fonts only: Gradio's default theme fetches Google Fonts, and
this page must not reach outside the machine."""

import gradio as gr

THEME = gr.themes.Default(
    primary_hue="teal",
    neutral_hue="slate",
    radius_size="sm",
    font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
)

CSS = """
.page-header h1 { margin: 0; font-size: 1.5rem; color: var(--primary-700); }
.page-header p { margin: 0.15rem 0 0; color: var(--body-text-color-subdued); }
.safety-banner {
  margin: 0.25rem 0 0; padding: 0.45rem 0.75rem; border-left: 4px solid #d97706;
  background: #fffbeb; color: #78350f; font-size: 0.9rem;
}
.sidebar { gap: 0.75rem; }
.session-list label { width: 100%; overflow-wrap: anywhere; }
.confirm-delete { padding: 0.6rem; background: #fef2f2; border: 1px solid #fecaca; }
.confirm-delete p { color: #7f1d1d; font-size: 0.9rem; }
.document-list { list-style: none; padding: 0; margin: 0; }
.document-list li { padding: 0.4rem 0; border-bottom: 1px solid var(--border-color-primary); }
.document-list li b { overflow-wrap: anywhere; }
.document-list li span { display: block; font-size: 0.85rem; color: var(--body-text-color-subdued); }
.record-size { margin-top: 0.6rem; font-weight: 600; }
.record-size.fits { color: var(--primary-700); }
.documents-summary .record-size.too-long, .documents-summary .upload-failed :is(p, li) { color: #b91c1c; }
.upload-failed ul { margin: 0.25rem 0 0.5rem 1rem; }
.hint { color: var(--body-text-color-subdued); }
.patient-warning { padding: 0.4rem 0.6rem; background: #fef2f2; color: #991b1b; font-size: 0.9rem; }
#chat .disclaimer {
  margin-top: 0.6rem; padding-top: 0.4rem; border-top: 1px solid var(--border-color-primary);
  font-size: 0.8rem; font-style: italic; color: var(--body-text-color-subdued);
}
#chat .notice { color: #92400e; }
#chat .cite { color: var(--primary-700); font-weight: 600; margin-left: 0.1rem; }
#chat .unsupported { background: #fef2f2; text-decoration: underline dotted #b91c1c; }
#chat .support-label {
  margin-left: 0.3rem; padding: 0 0.3rem; border-radius: 3px; font-size: 0.75rem;
  background: #fee2e2; color: #991b1b; white-space: nowrap;
}
#chat .summary h4 { margin: 0.8rem 0 0.2rem; }
#chat .summary .quote { display: block; font-size: 0.8rem; color: var(--body-text-color-subdued); }
#chat .summary .warning { padding: 0.4rem 0.6rem; background: #fef2f2; color: #991b1b; }
#chat .sources { margin-top: 0.6rem; font-size: 0.85rem; }
#chat .sources .where { font-weight: 600; }
#chat .sources mark { background: #fef9c3; }
#chat .sources summary { cursor: pointer; }
#chat .sources .page {
  max-height: 16rem; overflow: auto; white-space: pre-wrap; margin: 0.3rem 0 0.5rem; padding: 0.4rem 0.6rem;
  border-left: 3px solid var(--border-color-primary); font-size: 0.8rem;
}
/* Clearing the chat view would look like deleting the conversation, which stays stored;
   "Delete this session" is the one way to remove it. */
#chat button[aria-label="Clear"] { display: none; }
.status-bar {
  border-top: 1px solid var(--border-color-primary); padding-top: 0.4rem;
  font-size: 0.85rem; color: var(--body-text-color-subdued);
}
"""
