// sei-local's DORA dashboard: fills in the figures of the report embedded in the page and
// draws one chart per metric with uPlot, each over its DORA bands. Every figure element gets
// the exact number in `data-value` (the text is rounded), so a test can compare it with the API.
(function () {
  "use strict";
  var source = document.getElementById("dora-report");
  if (!source) { return; }
  var report = JSON.parse(source.textContent);
  var overall = report.overall;

  function show(id, value, digits) {
    var element = document.getElementById(id);
    if (value === null || value === undefined) {
      element.textContent = "–";
      element.dataset.value = "null";
      return;
    }
    element.dataset.value = String(value);
    element.textContent = typeof value === "number" && digits !== undefined
      ? value.toFixed(digits) : String(value);
    if (element.classList.contains("grade")) { element.classList.add("grade-" + value); }
  }
  function percent(rate) { return rate === null ? null : rate * 100; }

  var mttr = overall.mttr, df = overall.deployment_frequency, cfr = overall.change_failure_rate;
  show("mttr-median", mttr.median_hours, 1);
  show("mttr-mean", mttr.mean_hours, 1);
  show("mttr-count", mttr.count);
  show("mttr-grade", mttr.grade);
  show("df-per-week", df.per_week, 2);
  show("df-per-day", df.per_day, 2);
  show("df-count", df.count);
  show("df-grade", df.grade);
  show("cfr-rate", percent(cfr.rate), 1);
  show("cfr-failures", cfr.failures);
  show("cfr-deployments", cfr.deployments);
  show("cfr-grade", cfr.grade);
  if (report.incidents_with_caused_by > 0) {
    show("cfr-attributed-rate", percent(cfr.attributed.rate), 1);
    show("cfr-attributed-failed", cfr.attributed.failed_deployments);
    show("cfr-attributed-grade", cfr.attributed.grade);
  } else {
    // Nothing to attribute with: a grade would claim a success the data cannot show.
    show("cfr-attributed-rate", null);
    show("cfr-attributed-failed", 0);
    show("cfr-attributed-grade", null);
    document.getElementById("cfr-attributed-grade").textContent = "no incident names a change in caused_by";
  }
  document.getElementById("figures").hidden = false;

  var groups = report.groups;
  var xs = groups.map(function (g) { return Date.parse(g.from) / 1000; });
  var colors = { Elite: "rgba(46,160,67,0.13)", High: "rgba(88,166,255,0.13)",
                 Medium: "rgba(210,153,34,0.15)", Low: "rgba(248,81,73,0.13)" };

  // Paints horizontal bands (value ranges) behind the series.
  function bandsHook(bands) {
    return function (u) {
      var ctx = u.ctx, box = u.bbox, scale = u.scales.y;
      ctx.save();
      bands.forEach(function (band) {
        var low = Math.max(band.from, scale.min), high = Math.min(band.to, scale.max);
        if (!(high > low)) { return; }
        var top = u.valToPos(high, "y", true), bottom = u.valToPos(low, "y", true);
        ctx.fillStyle = colors[band.grade];
        ctx.fillRect(box.left, top, box.width, bottom - top);
      });
      ctx.restore();
    };
  }

  function chart(id, series, data, bands, yRange) {
    var element = document.getElementById(id);
    var width = Math.max(320, Math.min(960, element.clientWidth || 900));
    var options = {
      width: width, height: 240,
      scales: { x: { time: true }, y: { range: yRange } },
      series: [{}].concat(series),
      axes: [{}, {}],
      hooks: { drawClear: [bandsHook(bands)] }
    };
    element.dataset.points = String(data[0].length);
    return new uPlot(options, [xs].concat(data), element);
  }

  if (groups.length === 0 || typeof uPlot === "undefined") { return; }
  var INF = 1e12;
  chart("mttr-chart",
    [{ label: "median hours", stroke: "#1f6feb", width: 2, points: { show: true } }],
    [groups.map(function (g) { return g.mttr.median_hours; })],
    [{ from: 0, to: 1, grade: "Elite" }, { from: 1, to: 24, grade: "High" },
     { from: 24, to: 168, grade: "Medium" }, { from: 168, to: INF, grade: "Low" }],
    function (u, min, max) { return [0, Math.max(max || 0, 2) * 1.1]; });
  chart("df-chart",
    [{ label: "deployments per week", stroke: "#8957e5", width: 2, points: { show: true } }],
    [groups.map(function (g) { return g.deployment_frequency.per_week; })],
    [{ from: 0, to: 7 / 30, grade: "Low" }, { from: 7 / 30, to: 1, grade: "Medium" },
     { from: 1, to: 7, grade: "High" }, { from: 7, to: INF, grade: "Elite" }],
    function (u, min, max) { return [0, Math.max(max || 0, 1.5) * 1.1]; });
  chart("cfr-chart",
    [{ label: "failure rate %", stroke: "#cf222e", width: 2, points: { show: true } },
     { label: "attributed %", stroke: "#6e7781", width: 2, dash: [6, 4], points: { show: true } }],
    [groups.map(function (g) { return percent(g.change_failure_rate.rate); }),
     groups.map(function (g) { return percent(g.change_failure_rate.attributed.rate); })],
    [{ from: 0, to: 15, grade: "Elite" }, { from: 15, to: 30, grade: "High" },
     { from: 30, to: 45, grade: "Medium" }, { from: 45, to: INF, grade: "Low" }],
    function (u, min, max) { return [0, Math.max(max || 0, 50) * 1.1]; });
  document.body.dataset.rendered = "true";
})();
