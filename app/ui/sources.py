"""Sources one click away: the script that opens a cited source at its highlighted words.

A citation marker `[n]`, and a point of a plot (app/plots.py), is a link (app/render.py), so Tab reaches it and Enter follows it. Followed, it opens the
"Sources" list of its own answer and source `n` in it, and scrolls the page text so that the highlighted words are
in view, then moves the focus there for a keyboard user. Opening any quoted line or source by hand scrolls its page
text the same way: the highlight may lie far down a long page.
"""

SOURCES_SCRIPT = """
<script>
(() => {
  const showMark = (details) => {
    const page = details.querySelector(":scope > .page");
    const mark = page && page.querySelector("mark");
    if (!mark) return;
    // Where the highlight starts within the scrolled page text, put a third of the way down its box.
    const below = mark.getBoundingClientRect().top - page.getBoundingClientRect().top;
    page.scrollTop = Math.max(0, page.scrollTop + below - page.clientHeight / 3);
    mark.scrollIntoView({block: "nearest"});
  };
  document.addEventListener("toggle", (event) => {
    if (event.target.tagName === "DETAILS" && event.target.open) showMark(event.target);
  }, true);
  document.addEventListener("click", (event) => {
    const link = event.target.closest && event.target.closest("a.cite-link");
    if (!link) return;
    event.preventDefault();
    event.stopPropagation();
    const number = link.getAttribute("href").replace("#source-", "");
    const answer = link.closest(".message, .checked-text, #trends") || document;
    const source = answer.querySelector(`details.sources li[value="${number}"]`);
    if (!source) return;
    const list = source.closest("details.sources");
    if (list) list.open = true;
    const details = source.querySelector(":scope > details");
    if (details) details.open = true;
    // The source first, then its highlighted words, last: a source taller than the window would otherwise be
    // scrolled to its edge, past the words.
    source.scrollIntoView({block: "nearest"});
    if (details) {
      showMark(details);
      requestAnimationFrame(() => showMark(details));  // again once the opened page text is laid out
      setTimeout(() => showMark(details), 300);  // and after the chat's own scrolling, which may follow an update
    }
    const summary = details ? details.querySelector(":scope > summary") : null;
    (summary || source).focus({preventScroll: true});
  }, true);
})();
</script>
"""
