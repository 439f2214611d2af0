// Keeps a watched status true while the page's socket is down, and never lets
// an older version of it replace a newer one.
//
// A card (the element with data-watch) that is not final yet also carries
// hx-get="<status url>" hx-trigger="every 2s, live:refresh": htmx polls it, and
// the server answers 286 at a final state, which ends the polling. This file
// only lets a poll go out while the socket is down (static/js/live.js keeps
// data-socket on each card), or once when live.js asks for a re-read
// (data-refresh), and compares data-version before an HTTP answer is swapped.
(function () {
  "use strict";

  var STATUS = ".status[data-version]";

  function versionOf(node) {
    if (!node) return null;
    var status = node.matches && node.matches(STATUS) ? node : node.querySelector(STATUS);
    if (!status) return null;
    var version = parseInt(status.getAttribute("data-version"), 10);
    return isNaN(version) ? null : version;
  }

  function parse(html) {
    var template = document.createElement("template");
    template.innerHTML = html; // inert: nothing in a template runs
    return template.content;
  }

  function isOlder(incoming, target) {
    var next = versionOf(incoming);
    var current = versionOf(target);
    return next !== null && current !== null && next < current;
  }

  // The gate: poll only once the socket is down (it failed to connect, closed,
  // or went silent, and is reconnecting) and until it opens again, and never
  // past a final state. A socket still making its first connection is given time.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var watcher = event.detail.elt;
    if (!watcher.hasAttribute || !watcher.hasAttribute("data-poll-status")) return;
    var status = watcher.querySelector(STATUS);
    var final = status && status.getAttribute("data-final") === "true";
    var asked = watcher.getAttribute("data-refresh") === "now";
    watcher.removeAttribute("data-refresh");
    if ((watcher.getAttribute("data-socket") !== "closed" && !asked) || final ||
        watcher.getAttribute("data-poll-status") === "stopped") {
      event.preventDefault();
    }
  });

  // A status link that expired or was refused (404/403): stop asking.
  document.addEventListener("htmx:responseError", function (event) {
    var watcher = event.detail.elt;
    if (watcher.hasAttribute && watcher.hasAttribute("data-poll-status")) {
      watcher.setAttribute("data-poll-status", "stopped");
    }
  });

  // An HTTP answer that is older than what the socket already showed.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var target = event.detail.target;
    if (!target || !target.matches || !target.matches(STATUS)) return;
    if (isOlder(parse(event.detail.serverResponse || ""), target)) {
      event.detail.shouldSwap = false;
    }
  });
})();
