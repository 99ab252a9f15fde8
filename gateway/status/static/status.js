// edgegw status page: swap in a freshly server-rendered panel every few seconds.
// A 401/403 means the session ended: go back to the sign-in form. Pauses while the tab is hidden.
(function () {
  "use strict";
  const panel = document.getElementById("panel");
  const updated = document.getElementById("updated");
  const stale = document.getElementById("stale");
  if (!panel) return;
  const everyMs = 1000 * (Number(panel.dataset.refreshS) || 2);
  // The CSRF token (double submit): the server checks it on every cookie request that changes state.
  const csrfMeta = document.querySelector('meta[name="csrf-token"]');
  const csrf = csrfMeta ? csrfMeta.content : "";
  window.edgegwFetch = function (url, options) {
    const opts = Object.assign({credentials: "same-origin", cache: "no-store"}, options || {});
    opts.headers = Object.assign({"X-CSRF-Token": csrf}, opts.headers || {});
    return fetch(url, opts);
  };

  async function refresh() {
    if (document.hidden) return;
    try {
      const resp = await window.edgegwFetch("/admin/panel");
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
