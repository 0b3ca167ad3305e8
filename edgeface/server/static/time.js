// Timestamps in the reviewer's own time zone (the server writes UTC; the UTC text stays as the tooltip),
// and the pending count in the header, refreshed every 30 s. Served from 'self' under the strict CSP.
"use strict";
(function () {
  function pad(n) { return String(n).padStart(2, "0"); }
  function zoneName(d) {
    try {
      var part = new Intl.DateTimeFormat("en-GB", { timeZoneName: "short" })
        .formatToParts(d).find(function (p) { return p.type === "timeZoneName"; });
      return part ? part.value : "";
    } catch (e) { return ""; }
  }
  function localise() {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    document.querySelectorAll("time.ts").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) { return; }
      el.title = el.textContent + (zone ? " (shown in " + zone + ")" : "");
      el.textContent = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
        pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + " " + zoneName(d);
    });
    var note = document.getElementById("tz-note");
    if (note && zone) { note.textContent = "Times in " + zone + " (" + zoneName(new Date()) + ")."; }
  }
  function refreshCount() {
    var el = document.getElementById("pending-count");
    if (!el || !el.dataset.src || document.hidden) { return; }
    fetch(el.dataset.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (c) {
        if (!c) { return; }
        el.textContent = String(c.pending);
        el.title = c.pending + " pending matches, " + c.awaiting_second + " awaiting a second confirmation";
      })
      .catch(function () { /* offline for a moment: the next refresh tries again */ });
  }
  document.addEventListener("DOMContentLoaded", function () {
    localise();
    refreshCount();
    setInterval(refreshCount, 30000);
  });
})();
