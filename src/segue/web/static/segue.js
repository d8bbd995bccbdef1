// Segue jobs page: draws each step's progress chart (uPlot) from the JSON in
// its data-progress-chart attribute, and draws them all again whenever htmx
// swaps in a newer version of the live part of the page. No inline script: the
// page's Content Security Policy allows scripts from this server only.
(function () {
  "use strict";

  var COLOURS = ["#2f5d9e", "#1f7a3d", "#b42318", "#a15c00", "#6b2fa3", "#0b7285", "#5c677d"];
  var drawn = [];

  function percent(value) {
    return value == null ? "-" : Math.round(value * 100) + "%";
  }

  function clock(seconds) {
    return new Date(seconds * 1000).toISOString().substring(11, 23);
  }

  function series(labels) {
    return [{ label: "UTC", value: function (u, v) { return v == null ? "-" : clock(v); } }].concat(
      labels.map(function (label, i) {
        return {
          label: label,
          stroke: COLOURS[i % COLOURS.length],
          width: 2,
          spanGaps: true,
          points: { show: true, size: 5 },
          value: function (u, v) { return percent(v); },
        };
      })
    );
  }

  function drawChart(figure) {
    var target = figure.querySelector(".plot");
    if (!target || typeof uPlot === "undefined") {
      return;
    }
    var chart = JSON.parse(figure.getAttribute("data-progress-chart"));
    var options = {
      width: Math.max(320, target.clientWidth || 480),
      height: 200,
      // Times in UTC, as everywhere on the page (not the browser's zone).
      tzDate: function (seconds) { return uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"); },
      scales: { x: { time: true }, y: { range: [0, 1] } },
      axes: [{}, { values: function (u, splits) { return splits.map(percent); } }],
      series: series(chart.labels),
    };
    drawn.push(new uPlot(options, chart.data, target));
    var points = 0;
    chart.data.slice(1).forEach(function (values) {
      values.forEach(function (v) { if (v != null) { points += 1; } });
    });
    figure.setAttribute("data-points", String(points));
  }

  function drawAll() {
    while (drawn.length) {
      drawn.pop().destroy();
    }
    document.querySelectorAll("[data-progress-chart]").forEach(drawChart);
  }

  document.addEventListener("DOMContentLoaded", drawAll);
  document.addEventListener("htmx:afterSettle", drawAll);
})();
