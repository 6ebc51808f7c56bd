"""The page's look. Fonts are system fonts only: Gradio's default theme fetches Google Fonts, and
this page must not reach outside the machine."""

import gradio as gr

THEME = gr.themes.Default(
    primary_hue="teal",
    neutral_hue="slate",
    radius_size="sm",
    font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"],
    font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"],
).set(
    # Gradio's subdued text (slate 400) is 2.6:1 on white; slate 600 is 7.6:1, above WCAG AA's 4.5:1.
    body_text_color_subdued="*neutral_600",
    block_info_text_color="*neutral_600",
    input_placeholder_color="*neutral_500",
    # White on teal 500 or red 500 is under 4:1; on their 700s it is above 5:1.
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_cancel_background_fill="#b91c1c",
    button_cancel_background_fill_hover="#991b1b",
)

CSS = """
@media (min-width: 1100px) {
  .workspace > .sessions-column { order: 1; }
  .workspace > .chat-column { order: 2; }
  .workspace > .documents-column { order: 3; }
}
/* A visible focus on everything a keyboard reaches; important, because Gradio's own styles take the outline off
   its text boxes. */
:is(button, a, summary, input, textarea, select, [tabindex]):focus-visible {
  outline: 3px solid #0f766e !important; outline-offset: 2px;
}
.session-list label:focus-within { outline: 3px solid #0f766e; outline-offset: 1px; }
.page-header h1 { margin: 0; font-size: 1.5rem; color: var(--primary-700); }
.page-header p { margin: 0.15rem 0 0; color: var(--body-text-color-subdued); }
.safety-banner {
  margin: 0.25rem 0 0; padding: 0.45rem 0.75rem; border-left: 4px solid #d97706;
  background: #fffbeb; color: #78350f; font-size: 0.9rem;
}
.sidebar { gap: 0.75rem; }
.session-list label { width: 100%; overflow-wrap: anywhere; }
.format-note { margin: 0.3rem 0; padding: 0.4rem 0.6rem; background: #fffbeb; border: 1px solid #fcd34d;
  color: #78350f; font-size: 0.9rem; overflow-wrap: anywhere; }
.patient-warning, .upload-failed, .upload-failed li { overflow-wrap: anywhere; }
.export-link { display: block; margin: 0.2rem 0; font-size: 0.9rem; }
.export-link.disabled { color: var(--body-text-color-subdued); }
.signed-in { margin: 0; font-size: 0.9rem; }
.confirm-delete { padding: 0.6rem; background: #fef2f2; border: 1px solid #fecaca; }
.confirm-delete p { color: #7f1d1d; font-size: 0.9rem; }
.document-list { list-style: none; padding: 0; margin: 0; }
.document-list li { padding: 0.4rem 0; border-bottom: 1px solid var(--border-color-primary); }
.document-list li b { overflow-wrap: anywhere; }
.document-list li span { display: block; font-size: 0.85rem; color: var(--body-text-color-subdued); }
.record-size { margin-top: 0.6rem; font-weight: 600; }
.record-size.fits { color: var(--primary-700); }
/* Gradio lays a progress's text over its bar in a narrow column: here the text comes first, the bar under it. */
.reading-progress { min-height: 5rem; }
#reading-progress .wrap { display: flex; flex-direction: column; justify-content: flex-start; height: 100%; gap: 0.3rem; }
#reading-progress .progress-text { position: static; order: 2; align-self: center; }
.documents-summary .record-size.too-long, .documents-summary .upload-failed :is(p, li) { color: #b91c1c; }
.upload-failed ul { margin: 0.25rem 0 0.5rem 1rem; }
.hint { color: var(--body-text-color-subdued); }
.patient-warning { padding: 0.4rem 0.6rem; background: #fef2f2; color: #991b1b; font-size: 0.9rem; }
:is(#chat, #check-result, #trends) .disclaimer {
  margin-top: 0.6rem; padding-top: 0.4rem; border-top: 1px solid var(--border-color-primary);
  font-size: 0.85rem; font-style: italic; color: #334155;
}
:is(#chat, #check-result, #trends) .notice { color: #92400e; }
/* A partial answer once the connection is lost (app/ui/connection.py): not to be mistaken for an answer. */
#chat .incomplete { color: #92400e; font-weight: 600; border-left: 3px solid #92400e; padding-left: 0.5em; }
:is(#chat, #check-result, #trends) .cite { color: var(--primary-700); font-weight: 600; margin-left: 0.1rem; }
:is(#chat, #check-result, #trends) .cite-link { color: inherit; text-decoration: underline; }
:is(#chat, #check-result, #trends) .cite-link:focus-visible, :is(#chat, #check-result, #trends) summary:focus-visible {
  outline: 2px solid var(--primary-700); outline-offset: 2px;
}
:is(#chat, #check-result, #trends) .evidence {
  margin-bottom: 0.6rem; padding: 0.4rem 0.6rem; border-left: 3px solid var(--primary-600);
  background: var(--background-fill-secondary); }
:is(#chat, #check-result, #trends) .evidence .evidence-title { margin: 0; font-weight: 600; font-size: 0.85rem; }
:is(#chat, #check-result, #trends) .evidence ul { margin: 0.2rem 0 0 1rem; }
:is(#chat, #check-result, #trends) .evidence .where { font-size: 0.85rem; color: #334155; margin-left: 0.3rem; }
:is(#chat, #check-result, #trends) .sentence.contradicted { background: #fef2f2; text-decoration: underline wavy #b91c1c; }
:is(#chat, #check-result, #trends) .sentence.not_found { background: #fffbeb; text-decoration: underline dotted #92400e; }
:is(#chat, #check-result, #trends) .label {
  margin-left: 0.3rem; padding: 0 0.3rem; border-radius: 3px; font-size: 0.75rem; white-space: nowrap;
}
:is(#chat, #check-result, #trends) .label.supported { background: #dcfce7; color: #14532d; }
:is(#chat, #check-result, #trends) .label.contradicted { background: #fee2e2; color: #7f1d1d; }
:is(#chat, #check-result, #trends) .label.not_found { background: #fef3c7; color: #78350f; }
:is(#chat, #check-result, #trends) .label-note { display: block; font-size: 0.8rem; color: #78350f; }
:is(#chat, #check-result, #trends) .app-note { font-size: 0.85rem; color: #334155; }
:is(#chat, #check-result, #trends) .app-note .app-name { font-weight: 600; }
:is(#chat, #check-result, #trends) .warning { padding: 0.4rem 0.6rem; background: #fef2f2; color: #991b1b; }
:is(#chat, #check-result, #trends) .unverified summary { cursor: pointer; font-size: 0.85rem; color: #334155; }
:is(#chat, #check-result, #trends) .unverified .quote { display: block; font-size: 0.8rem; color: #334155; }
:is(#chat, #check-result, #trends) .origin { font-size: 0.75rem; font-style: italic; color: #475569; }
:is(#chat, #check-result, #trends) .visually-hidden {
  position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
}
:is(#chat, #check-result, #trends) .sources { margin-top: 0.6rem; font-size: 0.85rem; }
:is(#chat, #check-result, #trends) .sources .where { font-weight: 600; }
:is(#chat, #check-result, #trends) :is(.sources, .evidence) mark { background: #fef9c3; }
:is(#chat, #check-result, #trends) :is(.sources, .evidence) summary { cursor: pointer; }
:is(#chat, #check-result, #trends) :is(.sources, .evidence) .page {
  max-height: 16rem; overflow: auto; white-space: pre-wrap; margin: 0.3rem 0 0.5rem; padding: 0.4rem 0.6rem;
  border-left: 3px solid var(--border-color-primary); font-size: 0.8rem;
}
#trends .plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: 0.6rem; }
#trends figure { margin: 0; }
#trends figcaption { font-size: 0.8rem; color: #334155; }
#trends svg.plot { width: 100%; height: auto; }
#trends h3 { font-size: 0.95rem; margin: 0.6rem 0 0.2rem; }
#trends .timeline details { font-size: 0.85rem; }
/* Gradio draws the chat's words at 80% opacity, which takes subdued text and the citation numbers below 4.5:1. */
#chat .prose.chatbot.md { opacity: 1; }
/* Clearing the chat view would look like deleting the conversation, which stays stored;
   "Delete this session" is the one way to remove it. */
#chat button[aria-label="Clear"] { display: none; }
.status-bar {
  border-top: 1px solid var(--border-color-primary); padding-top: 0.4rem;
  font-size: 0.85rem; color: var(--body-text-color-subdued);
}
"""
