// The exports page: a download is fetched and read as it streams, so the page can say how many
// rows (CSV and JSON Lines: one per line; a CSV's first line is its header) and bytes have
// arrived; then it is saved under the name the API gave it. The words come from the form's data
// attributes, in the reader's language. Without fetch streams the form downloads as a plain link.
(function () {
  "use strict";
  var form = document.getElementById("export-form");
  var status = document.getElementById("export-progress");
  if (!form || !status || !window.fetch || !window.ReadableStream || !window.URL) { return; }

  function size(bytes) {
    return bytes < 1048576 ? (bytes / 1024).toFixed(1) + " KB" : (bytes / 1048576).toFixed(1) + " MB";
  }
  function say(template, rows, bytes) {
    return template.replace("{rows}", rows.toLocaleString()).replace("{size}", size(bytes));
  }
  // Not form.dataset: a form's controls shadow its properties, and one is named "dataset".
  function words(name) { return form.getAttribute("data-" + name) || ""; }
  function filename(response) {
    var match = /filename="?([^";]+)"?/.exec(response.headers.get("content-disposition") || "");
    return match ? match[1] : "export";
  }

  form.addEventListener("submit", function (event) {
    if (event.submitter && event.submitter.getAttribute("data-direct")) { return; }  // a plain download
    event.preventDefault();
    var format = form.elements.namedItem("format").value;
    var counted = format === "csv" || format === "jsonl";
    var url = form.action + "?" + new URLSearchParams(new FormData(form)).toString();
    var button = document.getElementById("download");
    button.disabled = true;
    var parts = [], bytes = 0, lines = 0, shown = 0;
    fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok || !response.body) { window.location.href = url; return null; }  // the error page says why
      var reader = response.body.getReader();
      function next() {
        return reader.read().then(function (chunk) {
          if (chunk.done) { return response; }
          parts.push(chunk.value);
          bytes += chunk.value.length;
          if (counted) { for (var i = 0; i < chunk.value.length; i++) { if (chunk.value[i] === 10) { lines++; } } }
          var now = Date.now();
          if (now - shown > 200) {
            shown = now;
            status.textContent = counted ? say(words("rows"), Math.max(lines - (format === "csv" ? 1 : 0), 0), bytes)
                                         : say(words("bytes"), 0, bytes);
          }
          return next();
        });
      }
      return next();
    }).then(function (response) {
      if (!response) { return; }
      var rows = Math.max(lines - (format === "csv" ? 1 : 0), 0);
      var link = document.createElement("a");
      link.href = URL.createObjectURL(new Blob(parts, { type: response.headers.get("content-type") || "" }));
      link.download = filename(response);
      document.body.appendChild(link);
      link.click();
      link.remove();
      status.textContent = counted ? say(words("done-rows"), rows, bytes) : say(words("done-bytes"), 0, bytes);
      document.documentElement.setAttribute("data-export-rows", String(rows));
      window.setTimeout(function () { window.location.reload(); }, 1500);  // the new manifest in the list
    }).catch(function () {
      status.textContent = words("failed");
    }).then(function () { button.disabled = false; });
  });
})();
