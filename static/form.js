// The submission form's "Add another file": with this script the extra file pickers wait behind a button; without
// it they are all shown. And on "Check your answers", Enter in the form does nothing: without this script it would
// click the form's first button (Chromium and Firefox do so even on a checkbox), a hidden one that only shows the
// page again with its ticks kept; the server sends only for the visible button's action=send.
"use strict";
document.addEventListener("keydown", function (e) {
  if (e.key !== "Enter" || !e.target || e.target.tagName !== "INPUT") return;
  var form = e.target.form;
  if (form && form.hasAttribute("data-enter-does-not-send")) e.preventDefault();
});
document.addEventListener("DOMContentLoaded", function () {
  var button = document.querySelector("[data-add-file]");
  if (!button) return;
  var more = Array.prototype.slice.call(document.querySelectorAll("[data-more-files]"));
  more.forEach(function (row) {
    var input = row.querySelector("input[type=file]");
    if (!input || !input.files || input.files.length === 0) row.hidden = true;
  });
  function waiting() {
    return more.filter(function (row) { return row.hidden; });
  }
  button.hidden = waiting().length === 0;
  button.addEventListener("click", function () {
    var next = waiting()[0];
    if (!next) return;
    next.hidden = false;
    var input = next.querySelector("input[type=file]");
    if (input) input.focus();
    button.hidden = waiting().length === 0;
  });
});
