// Daily spend stacked by provider, drawn from <script type="application/json" id="spend-data">.
// The report is swapped by htmx when the filter changes: draw again after each swap. Not on
// htmx:afterSwap itself: the new canvas has the old one's id, so htmx first gives it the old
// canvas's attributes and puts its own back when the swap settles, which resets the canvas
// to a blank 300x150. htmx:afterSettle comes after that.
(function () {
  "use strict";

  var COLORS = ["#3559e0", "#e0812f", "#159a6b", "#b5338a", "#7a5af8", "#c9a400", "#4a90a4"];

  function color(providers, slug) {
    var i = providers.indexOf(slug);
    return COLORS[(i < 0 ? providers.length : i) % COLORS.length];
  }

  // The rule of billing/money.py: cents as cents, sub-cent places only where they exist
  // ("$0.07", "$0.016", "$1,234.50").
  function money(value) {
    var n = Number(value);
    var cents = Math.abs(Math.round(n * 10000)) % 100 === 0;
    var text = Math.abs(n).toLocaleString("en-US", {
      minimumFractionDigits: 2,
      maximumFractionDigits: cents ? 2 : 4,
    });
    return (n < 0 ? "-$" : "$") + text;
  }

  var current = null; // the chart drawn last, perhaps on a canvas swapped out since

  function draw() {
    if (current) current.destroy();
    current = null;
    var canvas = document.getElementById("spend-chart");
    var source = document.getElementById("spend-data");
    if (!canvas || !source || !window.Chart) return;
    var data = JSON.parse(source.textContent);
    var stacks = data.datasets.map(function (d) { return d.stack; });
    var both = stacks.indexOf("real") >= 0 && stacks.indexOf("sandbox") >= 0;
    current = new window.Chart(canvas, {
      type: "bar",
      data: {
        labels: data.days,
        datasets: data.datasets.map(function (d) {
          var c = color(data.providers, d.provider);
          return {
            label: d.label,
            stack: d.stack,
            data: d.data.map(Number),
            backgroundColor: d.stack === "sandbox" ? c + "55" : c,
            borderColor: c,
            borderWidth: d.stack === "sandbox" ? 1 : 0,
          };
        }),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
          y: { stacked: true, beginAtZero: true, ticks: { callback: money } },
        },
        plugins: {
          legend: { position: "bottom" },
          title: { display: both, text: "Left bar: real spend · right bar: sandbox - not billed" },
          tooltip: {
            callbacks: {
              label: function (ctx) { return ctx.dataset.label + ": " + money(ctx.raw); },
            },
            filter: function (item) { return Number(item.raw) !== 0; },
          },
        },
      },
    });
  }

  document.addEventListener("DOMContentLoaded", draw);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target && event.target.id === "report") draw();
  });
  document.addEventListener("htmx:historyRestore", draw);
})();
