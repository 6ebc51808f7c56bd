"""The page watching its connection to the server, in the browser.

It asks the server whether this browser is still signed in: twice a minute, so that an idle screen does not keep
showing a patient's record; and every two seconds while an answer or a summary is being written, or while the
server is away. When the server cannot be reached, whatever was being written is labelled incomplete at once (it is
neither finished nor checked, and the server's crash recovery marks its turn interrupted); when the server is back,
the page reloads, and reopens the session it had open (app/ui/page.py), through the sign-in page if the restart
ended the sign-in.
"""

CONNECTION_SCRIPT = """
<script>
(() => {
  const INCOMPLETE = "Incomplete: the connection to Clinidoc was lost while this was being written. It is not " +
    "finished and was not checked against the record; do not rely on it. This page reopens the session when " +
    "Clinidoc is back.";
  const WRITING = "#chat .answer.streaming, #chat .drafting";
  let lost = false, last = 0;
  const labelIncomplete = () => {
    for (const part of document.querySelectorAll(WRITING)) {
      if (part.previousElementSibling?.classList.contains("incomplete")) continue;
      const label = document.createElement("p");
      label.className = "incomplete";
      label.setAttribute("role", "alert");
      label.textContent = INCOMPLETE;
      part.before(label);
    }
  };
  const check = async () => {
    let state;
    try {
      state = await (await fetch("/signin/state", {credentials: "same-origin", cache: "no-store"})).json();
    } catch (error) {  // stopped, restarting, or the network is down
      lost = true;
      labelIncomplete();
      return;
    }
    if (lost) window.location.assign("/");  // through the sign-in page if the restart ended the sign-in
    else if (!state.signed_in) window.location.assign("/login?ended=idle");
  };
  setInterval(() => {
    const every = lost || document.querySelector(WRITING) ? 2000 : 30000;
    if (Date.now() - last >= every) {
      last = Date.now();
      check();
    }
  }, 1000);
})();
</script>
"""
