// Know when it is done, on every page that shows jobs (History, the upload page's
// outcome, the compare page, a job's page):
// - the tab title starts with the counts, "(2 running · 3 done) History · ...";
// - "Notify me when done": one browser notification when the page's running jobs of a
//   batch have all ended (after the user allowed it).
// Jobs on a page: History rows (tr.job-row.state-<state>, their batch on a
// [data-batch] cell) and [data-job-state] elements (compare tiles, a job's live part).
(function () {
  "use strict";

  var ACTIVE = ["queued", "submitting", "running", "fetching"];
  var FINAL = ["succeeded", "failed", "canceled"];
  var PREF = "portal.notify"; // "on" once the user asked for notifications
  var HIDDEN_POLL_MS = 5000;

  // Final states are for good: once seen, a stale copy of the page cannot undo them.
  var ended = {}; // job id -> final state
  var watched = {}; // batch -> true: it had running jobs on this page
  var jobs = []; // what the page shows now: [{id, batch, state}]
  var bar = null;
  var pollTimer = null;

  function supported() {
    return "Notification" in window;
  }

  function enabled() {
    return supported() && Notification.permission === "granted" && localStorage.getItem(PREF) === "on";
  }

  function read() {
    var found = [];
    document.querySelectorAll("tr.job-row").forEach(function (row) {
      var state = /\bstate-([a-z]+)\b/.exec(row.className);
      var cell = row.querySelector("[data-batch]");
      found.push({
        id: row.id.replace(/^job-/, ""),
        batch: cell ? cell.getAttribute("data-batch") : "",
        state: state ? state[1] : "",
      });
    });
    document.querySelectorAll("[data-job-state]").forEach(function (el) {
      found.push({
        id: el.getAttribute("data-job"),
        batch: el.getAttribute("data-batch") || "",
        state: el.getAttribute("data-job-state"),
      });
    });
    found.forEach(function (job) {
      if (ended[job.id]) job.state = ended[job.id];
      else if (FINAL.indexOf(job.state) >= 0) ended[job.id] = job.state;
    });
    return found;
  }

  function isActive(job) {
    return ACTIVE.indexOf(job.state) >= 0;
  }

  function title() {
    var base = document.title.replace(/^\([^)]*\)\s*/, "");
    var running = jobs.filter(isActive).length;
    var done = jobs.filter(function (job) {
      return FINAL.indexOf(job.state) >= 0;
    }).length;
    var parts = [];
    if (running) parts.push(running + " running");
    if (done) parts.push(done + " done");
    document.title = parts.length ? "(" + parts.join(" · ") + ") " + base : base;
  }

  function summary(list) {
    var counts = {};
    list.forEach(function (job) {
      counts[job.state] = (counts[job.state] || 0) + 1;
    });
    var words = FINAL.filter(function (state) {
      return counts[state];
    }).map(function (state) {
      return counts[state] + " " + state;
    });
    return list.length + " job" + (list.length === 1 ? "" : "s") + " finished: " + words.join(", ");
  }

  function announce(batch) {
    var mine = jobs.filter(function (job) {
      return job.batch === batch;
    });
    if (!mine.length || !enabled()) return;
    try {
      var note = new Notification(summary(mine), {
        body: document.title.replace(/^\([^)]*\)\s*/, ""),
        tag: "batch-" + batch,
      });
      note.onclick = function () {
        window.focus();
        note.close();
      };
    } catch (error) {
      // Some browsers (Android Chrome) only notify from a service worker: nothing to do.
    }
  }

  // A batch that had running jobs here and has none left: one notification.
  function settle() {
    jobs.forEach(function (job) {
      if (isActive(job) && job.batch) watched[job.batch] = true;
    });
    Object.keys(watched).forEach(function (batch) {
      var running = jobs.some(function (job) {
        return job.batch === batch && isActive(job);
      });
      if (!running) {
        delete watched[batch];
        announce(batch);
      }
    });
  }

  // --- The button -----------------------------------------------------------------------

  function anchor() {
    return document.querySelector("#compare, #live, table.jobs");
  }

  function label(button, note) {
    if (!supported()) {
      button.disabled = true;
      button.textContent = "Notifications unavailable";
      note.textContent = "This browser cannot show notifications; the tab title still shows the counts.";
    } else if (Notification.permission === "denied") {
      button.disabled = true;
      button.textContent = "Notifications blocked";
      note.textContent = "Notifications are blocked for this site in your browser's settings.";
    } else if (enabled()) {
      button.disabled = false;
      button.textContent = "Stop notifying me";
      button.setAttribute("aria-pressed", "true");
      note.textContent = "You will get a notification when these jobs end.";
    } else {
      button.disabled = false;
      button.textContent = "Notify me when done";
      button.setAttribute("aria-pressed", "false");
      note.textContent = "";
    }
  }

  function showBar() {
    var running = jobs.some(isActive);
    if (!bar) {
      if (!running) return;
      bar = document.createElement("div");
      bar.className = "notify-bar";
      var button = document.createElement("button");
      button.type = "button";
      button.id = "notify-me";
      var note = document.createElement("span");
      note.className = "muted small";
      note.setAttribute("role", "status");
      bar.appendChild(button);
      bar.appendChild(note);
      button.addEventListener("click", function () {
        if (enabled()) {
          localStorage.setItem(PREF, "off");
          label(button, note);
          return;
        }
        localStorage.setItem(PREF, "on");
        Promise.resolve(Notification.requestPermission()).then(function () {
          label(button, note);
        });
      });
    }
    var where = anchor();
    if (where && !document.contains(bar)) where.parentNode.insertBefore(bar, where);
    bar.hidden = !running;
    label(bar.firstChild, bar.lastChild);
  }

  // --- While the tab is hidden ----------------------------------------------------------
  // The page's own polling pauses in a hidden tab (portal.js), which is exactly when a
  // notification matters: then ask the server for the watched batches' states, a light
  // JSON answer, until they have ended or the tab is shown again.

  function pollHidden() {
    pollTimer = null;
    var batches = Object.keys(watched);
    if (!document.hidden || !enabled() || !batches.length) return;
    Promise.all(
      batches.map(function (batch) {
        return fetch("/jobs/batch/" + batch + "/states/", { credentials: "same-origin" })
          .then(function (response) {
            return response.ok ? response.json() : { jobs: {} };
          })
          .catch(function () {
            return { jobs: {} };
          });
      })
    ).then(function (answers) {
      answers.forEach(function (answer) {
        Object.keys(answer.jobs).forEach(function (id) {
          if (FINAL.indexOf(answer.jobs[id]) >= 0) ended[id] = answer.jobs[id];
        });
      });
      update();
    });
  }

  function schedule() {
    if (pollTimer === null && document.hidden && enabled() && Object.keys(watched).length) {
      pollTimer = window.setTimeout(pollHidden, HIDDEN_POLL_MS);
    }
  }

  function update() {
    jobs = read();
    title();
    settle();
    showBar();
    schedule();
  }

  document.addEventListener("DOMContentLoaded", update);
  // Rows and tiles re-render themselves every 2 s while their jobs run.
  document.addEventListener("htmx:afterSettle", update);
  document.addEventListener("visibilitychange", update);
})();
