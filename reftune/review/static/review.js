// Keyboard use of the review pages. All behaviour lives in this file: the page allows no inline script.
(function () {
  "use strict";
  let current = 0; // the selected sample on a question page

  function typing(target) {
    return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" ||
                      target.tagName === "SELECT" || target.isContentEditable);
  }
  function cards() { return Array.from(document.querySelectorAll("article.sample")); }
  function selectSample(number) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(number, all.length - 1));
    all.forEach(function (card) { card.classList.toggle("selected", Number(card.dataset.sample) === current); });
    const card = document.getElementById("sample-" + current);
    if (card) card.scrollIntoView({block: "nearest"});
  }
  function press(selector) {
    const card = document.getElementById("sample-" + current);
    const button = card && card.querySelector(selector);
    if (button) button.click();
  }
  function follow(id) {
    const link = document.getElementById(id);
    if (link) window.location.href = link.href;
  }
  function rows() { return Array.from(document.querySelectorAll("table.records tr.row")); }
  function moveRow(step) {
    const all = rows();
    if (!all.length) return;
    const at = all.findIndex(function (row) { return row.classList.contains("selected"); });
    const next = Math.max(0, Math.min(at < 0 ? 0 : at + step, all.length - 1));
    all.forEach(function (row, n) { row.classList.toggle("selected", n === next); });
    all[next].scrollIntoView({block: "nearest"});
  }
  function openRow() {
    const row = document.querySelector("table.records tr.row.selected");
    const link = row && row.querySelector("a.open");
    if (link) window.location.href = link.href;
  }
  function search() {
    const box = document.getElementById("search");
    const back = document.getElementById("back");  // the list this question was opened from
    if (box) { box.focus(); box.select(); } else { window.location.href = (back ? back.href : "/") + "#search"; }
  }

  function onEditorKey(event) {
    const form = event.target.closest("form.edit-form");
    if (!form) return false;
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { form.requestSubmit(); return true; }
    if (event.key === "Escape") { form.querySelector("button.cancel").click(); return true; }
    return false;
  }

  document.addEventListener("keydown", function (event) {
    if (event.target.tagName === "TEXTAREA" && onEditorKey(event)) { event.preventDefault(); return; }
    if (typing(event.target) || event.ctrlKey || event.metaKey || event.altKey) return;
    const onRecord = document.body.dataset.page === "record";
    const actions = {
      j: function () { onRecord ? follow("next") : moveRow(1); },
      k: function () { onRecord ? follow("prev") : moveRow(-1); },
      Enter: function () { if (!onRecord) openRow(); },
      a: function () { press("button.accept"); },
      r: function () { press("button.reject"); },
      f: function () { press("button.flag"); },
      e: function () { press("button.edit"); },
      w: function () { const write = document.querySelector("#write button.write"); if (write) write.click(); },
      s: function () { const ask = document.querySelector("#suggest button.suggest"); if (ask) ask.click(); },
      "/": search,
    };
    if (/^[1-9]$/.test(event.key) && onRecord) { selectSample(Number(event.key) - 1); event.preventDefault(); return; }
    if (actions[event.key]) { actions[event.key](); event.preventDefault(); }
  });

  document.addEventListener("click", function (event) {
    const card = event.target.closest && event.target.closest("article.sample");
    if (card) selectSample(Number(card.dataset.sample));
  });

  // a swapped card is a new element: mark it again, and put the cursor in a new editor
  document.addEventListener("htmx:afterSettle", function (event) {
    selectSample(current);
    const editor = event.detail.elt && event.detail.elt.querySelector && event.detail.elt.querySelector("textarea");
    if (editor && (event.detail.elt.classList.contains("editing") || event.detail.elt.id === "write")) editor.focus();
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (document.body.dataset.page === "record") selectSample(0);
    if (document.body.dataset.page === "list" && window.location.hash === "#search") search();
  });
})();
