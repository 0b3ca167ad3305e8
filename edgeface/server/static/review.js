// Review at speed: keyboard shortcuts for the review page (decide, choose a candidate, next/previous)
// and the queue (move, open, select for a bulk reject). Elements carry their key in data-key, so the
// page says what each key does and this file only dispatches. No key acts while typing in a field.
"use strict";
(function () {
  function typing(t) {
    return t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)) &&
      !(t.tagName === "INPUT" && (t.type === "radio" || t.type === "checkbox"));
  }
  function detailKeys(e, form) {
    var k = e.key;
    if (k === "/") { e.preventDefault(); document.getElementById("comment").focus(); return; }
    if (/^[1-9]$/.test(k)) {
      var radio = form.querySelector('input[name="identity"][data-key="' + k + '"]');
      if (radio) { radio.checked = true; radio.focus(); }
      return;
    }
    var target = document.querySelector('[data-key="' + k + '"]');
    if (!target) { return; }
    e.preventDefault();
    if (target.tagName === "BUTTON") {
      if (target.disabled) { return; }
      form.requestSubmit(target);
      form.querySelectorAll("button").forEach(function (b) { b.disabled = true; }); // one decision per page
    } else if (target.tagName === "A") {
      window.location.assign(target.href);
    }
  }
  function queueKeys(e, rows) {
    if (!rows.length) { return; }
    var cur = rows.findIndex(function (r) { return r.classList.contains("current"); });
    var k = e.key, move = { j: 1, ArrowDown: 1, k: -1, ArrowUp: -1 }[k];
    if (move) {
      e.preventDefault();
      var next = Math.min(rows.length - 1, Math.max(0, cur + move));
      if (cur >= 0) { rows[cur].classList.remove("current"); }
      rows[next].classList.add("current");
      rows[next].scrollIntoView({ block: "nearest" });
    } else if ((k === "Enter" || k === "o") && cur >= 0) {
      e.preventDefault();
      window.location.assign(rows[cur].querySelector("a.open").href);
    } else if (k === "x" && cur >= 0) {
      var box = rows[cur].querySelector("input.pick");
      if (box) { box.checked = !box.checked; }
    }
  }
  var newName = document.getElementById("new-person-name"); // typing a new person's name chooses "new person"
  if (newName) {
    newName.addEventListener("input", function () { document.getElementById("new-person-choice").checked = true; });
  }
  document.addEventListener("keydown", function (e) {
    if (e.altKey || e.ctrlKey || e.metaKey) { return; }
    if (typing(e.target)) {
      if (e.key === "Escape") { e.target.blur(); }
      return;
    }
    var form = document.getElementById("decide");
    if (form) { detailKeys(e, form); return; }
    var queue = document.getElementById("queue");
    if (queue) { queueKeys(e, Array.from(queue.querySelectorAll("tr.result"))); }
  });
})();
