// The submission form's "Add another file": with this script the extra file pickers wait behind a button; without
// it they are all shown. No other behaviour depends on it.
"use strict";
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
