// redrive console: refresh the parts of a page marked `data-refresh` by
// fetching their HTML fragment again, so lists stay current without a full
// reload. Pauses while the tab is hidden; keeps the old content on errors.
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  function refresh(element) {
    var url = element.getAttribute("data-refresh");
    if (!url) { return; }
    fetch(url, { headers: { "accept": "text/html" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        if (element.innerHTML !== html) { element.innerHTML = html; }
        element.removeAttribute("data-stale");
      })
      .catch(function () { element.setAttribute("data-stale", "true"); });
  }
  function tick() {
    if (document.hidden) { return; }
    var elements = document.querySelectorAll("[data-refresh]");
    for (var i = 0; i < elements.length; i++) { refresh(elements[i]); }
  }
  // Filters leave the URL short and shareable: empty fields are not sent.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("filters")) { return; }
    var fields = form.querySelectorAll("input[name], select[name]");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value === "") { fields[i].disabled = true; }
    }
  });
  setInterval(tick, PERIOD_MS);
  document.addEventListener("visibilitychange", tick);
})();
