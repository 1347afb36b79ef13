// On every page. What a strict Content-Security-Policy (no eval, no inline style) would
// otherwise refuse, done from this one static file.
(function () {
  "use strict";

  // Live parts of a page poll with hx-trigger="every 2s". A hidden tab skips its polls;
  // htmx keeps the timer running, so polling picks up again when the tab is shown.
  // (htmx's own filter, "every 2s [document.visibilityState === 'visible']", is
  // evaluated with Function(), which the CSP forbids.)
  document.addEventListener("htmx:beforeRequest", function (event) {
    var trigger = event.detail.elt.getAttribute("hx-trigger") || "";
    if (document.hidden && /^\s*every\s/.test(trigger)) event.preventDefault();
  });

  // A refused form answers 422 with the form and its errors (the "Run again" section):
  // show it where the form was. htmx swaps only 2xx answers unless told.
  document.addEventListener("htmx:beforeSwap", function (event) {
    if (event.detail.xhr.status === 422) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  // Sizes only the server knows, set through the CSSOM (allowed) instead of a style=""
  // attribute (refused): data-max-width="640" becomes max-width: 640px.
  function applySizes(root) {
    var found = Array.prototype.slice.call(root.querySelectorAll("[data-max-width]"));
    if (root.matches && root.matches("[data-max-width]")) found.push(root);
    found.forEach(function (el) {
      el.style.maxWidth = el.getAttribute("data-max-width") + "px";
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    applySizes(document);
  });
  // Content swapped in by htmx (a job page that has just finished shows its slider).
  document.addEventListener("htmx:load", function (event) {
    applySizes(event.target);
  });
})();
