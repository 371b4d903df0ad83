// redrive console: refresh the parts of a page marked `data-refresh` by
// fetching their HTML fragment again, so lists stay current without a full
// reload. Pauses while the tab is hidden; keeps the old content on errors.
//
// Copy buttons beside ids and endpoints only show once this script runs
// (the `js` class); without it the text can still be selected.
(function () {
  "use strict";
  var PERIOD_MS = 3000;
  document.documentElement.classList.add("js");
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
  // Copies through a hidden text area where the Clipboard API is missing
  // (plain http to another host is not a secure context).
  function copyByHand(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    document.body.removeChild(area);
    return copied;
  }
  function copied(button, ok) {
    var title = button.getAttribute("title");
    button.setAttribute("data-copied", ok ? "true" : "false");
    button.setAttribute("title", ok ? "Copied" : "Copy failed: select the text instead");
    setTimeout(function () {
      button.removeAttribute("data-copied");
      button.setAttribute("title", title);
    }, 1500);
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button.copy") : null;
    if (!button) { return; }
    event.preventDefault();
    var text = button.getAttribute("data-copy") || "";
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { copied(button, true); },
        function () { copied(button, copyByHand(text)); });
    } else {
      copied(button, copyByHand(text));
    }
  });
  setInterval(tick, PERIOD_MS);
  document.addEventListener("visibilitychange", tick);
})();
