// Draws the dashboard's charts from the JSON in #chart-data (labels already in the reader's
// language, amounts already formatted); the tables beside them carry the same figures for
// screen readers and for a browser without scripts.
(function () {
  "use strict";
  var source = document.getElementById("chart-data");
  if (!source || typeof echarts === "undefined") { return; }
  var data = JSON.parse(source.textContent);
  var charts = [];
  function draw(id, chart, kind) {
    var element = document.getElementById(id);
    if (!element || !chart) { return; }
    var instance = echarts.init(element, null, { renderer: "svg" });
    var labels = chart.items.map(function (item) { return item.name; });
    // ECharts puts what a tooltip formatter returns into the page as HTML: names come from the
    // data (a provider's name), so both parts are escaped.
    var escape = echarts.format.encodeHTML;
    var tooltip = { trigger: "item", formatter: function (p) { return escape(p.name) + ": " + escape(chart.items[p.dataIndex].label); } };
    var option = kind === "pie" ? {
      tooltip: tooltip, legend: { bottom: 0 },
      series: [{ type: "pie", radius: ["35%", "65%"], data: chart.items.map(function (i) { return { name: i.name, value: i.value }; }),
                 label: { formatter: function (p) { return p.name + "\n" + chart.items[p.dataIndex].label; } } }]
    } : {
      tooltip: tooltip, grid: { left: 24, right: 24, bottom: 32, top: 24, containLabel: true },
      xAxis: { type: "category", data: labels }, yAxis: { type: "value", axisLabel: { show: false } },
      series: [{ type: "bar", data: chart.items.map(function (i) { return i.value; }) }]
    };
    instance.setOption(option);
    charts.push(instance);
  }
  draw("chart-budget", data.budget, "pie");
  draw("chart-burn", data.burn, "bar");
  draw("chart-providers", data.providers, "bar");
  draw("chart-categories", data.categories, "pie");
  draw("chart-regions", data.regions, "bar");
  draw("chart-caps", data.caps, "bar");
  window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  document.documentElement.setAttribute("data-charts", String(charts.length));
})();
