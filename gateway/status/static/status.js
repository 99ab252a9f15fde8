// edgegw status page: swap in a freshly server-rendered panel every few seconds.
// A 401/403 means the session ended: go back to the sign-in form. Pauses while the tab is hidden.
(function () {
  "use strict";
  const panel = document.getElementById("panel");
  const updated = document.getElementById("updated");
  const stale = document.getElementById("stale");
  if (!panel) return;
  const everyMs = 1000 * (Number(panel.dataset.refreshS) || 2);

  async function refresh() {
    if (document.hidden) return;
    try {
      const resp = await fetch("/admin/panel", {credentials: "same-origin", cache: "no-store"});
      if (resp.status === 401 || resp.status === 403) {
        window.location.assign("/admin");
        return;
      }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      panel.innerHTML = await resp.text();
      updated.textContent = new Date().toLocaleTimeString([], {hour12: false});
      updated.dataset.refreshes = String(Number(updated.dataset.refreshes || 0) + 1);
      stale.hidden = true;
    } catch (err) {
      stale.hidden = false;
    }
  }

  setInterval(refresh, everyMs);
  document.addEventListener("visibilitychange", refresh);
})();
