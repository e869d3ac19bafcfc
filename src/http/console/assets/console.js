// callhook console: live rows and the reprocess buttons. Plain JavaScript, no dependencies.
// Requests go to this origin with the session cookie; those that change something carry the
// X-Callhook-Console header the server requires of them (CSRF check).
"use strict";

(function live() {
  const rows = document.getElementById("live-rows");
  if (!rows || !window.EventSource) return;
  const state = document.getElementById("live-state");
  const show = (text, cls) => {
    if (!state) return;
    state.textContent = text;
    state.className = "live-state " + cls;
  };
  const versions = () => {
    const seen = new Map();
    rows.querySelectorAll("tr[data-session]").forEach((tr) => seen.set(tr.dataset.session, tr.dataset.updated));
    return seen;
  };
  let pending = null;
  let running = false;
  // An event only says that something changed: the rows are rendered again by the server,
  // with the page's own filters and masking, at most a few times a second.
  const refresh = async () => {
    pending = null;
    if (running) { pending = setTimeout(refresh, 250); return; }
    running = true;
    try {
      const before = versions();
      const answer = await fetch(rows.dataset.rowsUrl, { credentials: "same-origin", cache: "no-store" });
      if (answer.redirected || !answer.ok) { show("Session ended: log in again to see live calls.", "down"); return; }
      rows.innerHTML = await answer.text();
      rows.querySelectorAll("tr[data-session]").forEach((tr) => {
        if (before.get(tr.dataset.session) !== tr.dataset.updated) tr.classList.add("fresh");
      });
    } catch (error) {
      show("Could not fetch the calls; retrying on the next change.", "down");
    } finally {
      running = false;
    }
  };
  const nudge = () => { if (!pending) pending = setTimeout(refresh, 150); };
  const stream = new EventSource(rows.dataset.streamUrl, { withCredentials: true });
  stream.addEventListener("open", () => { show("Live: new and changed calls appear as they happen.", "live"); nudge(); });
  stream.addEventListener("call", nudge);
  stream.addEventListener("error", () => show("Live stream interrupted; reconnecting…", "down"));
})();

(function reprocess() {
  document.querySelectorAll("button[data-reprocess]").forEach((button) => {
    button.addEventListener("click", async () => {
      button.disabled = true;
      const cell = button.closest("tr").querySelector("td.reprocessed");
      try {
        const answer = await fetch(button.dataset.reprocess, {
          method: "POST",
          credentials: "same-origin",
          headers: { "X-Callhook-Console": "1" },
        });
        const body = await answer.json();
        if (answer.ok) {
          cell.textContent = body.outcome + (body.error ? " · " + (body.error.message || body.error.code) : "");
        } else {
          cell.textContent = "refused: " + (body.error ? body.error.message : answer.status);
          button.disabled = false;
        }
      } catch (error) {
        cell.textContent = "could not reach callhook";
        button.disabled = false;
      }
    });
  });
})();
