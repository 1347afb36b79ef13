// History: the "Download selected as ZIP" button counts the ticked jobs that have a
// result, and says how many are left out (failed, running, files deleted). Without
// JavaScript the button still works; the ZIP simply leaves those jobs out.
(function () {
  "use strict";

  var BOXES = 'input[form="zip-selection"]';

  function update() {
    var form = document.getElementById("zip-selection");
    if (!form) return;
    var button = form.querySelector("button");
    var note = document.getElementById("zip-selected-note");
    var ticked = Array.prototype.slice.call(document.querySelectorAll(BOXES + ":checked"));
    // data-result sits on the cell, which each live update re-renders; the box itself is
    // kept across updates (hx-preserve), so a job that has just finished counts.
    var results = ticked.filter(function (box) {
      var cell = box.closest("td");
      return cell && cell.hasAttribute("data-result");
    }).length;
    var left = ticked.length - results;
    button.disabled = results === 0;
    button.textContent = ticked.length
      ? "Download " + results + " result" + (results === 1 ? "" : "s") + " as ZIP"
      : "Download selected as ZIP";
    note.textContent = left
      ? left + " selected job" + (left === 1 ? " has" : "s have") + " no result and " +
        (left === 1 ? "is" : "are") + " left out."
      : "";
  }

  document.addEventListener("change", function (event) {
    if (event.target.matches && event.target.matches(BOXES)) update();
  });
  document.addEventListener("htmx:afterSettle", update);
  document.addEventListener("DOMContentLoaded", update);
})();
