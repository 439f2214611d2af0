// Reads out each submission's status changes in one polite live region.
//
// The websocket swaps a status element by id, replacing it whole: a live
// region on it would vanish with it, and one on its card would re-read the
// whole timeline at every progress step. So one stable region for the page
// says just the status line, once per change of status.
(function () {
  "use strict";
  var region = document.getElementById("announcer");
  if (!region) return;
  var seen = {};

  function scan(announce) {
    var said = [];
    document.querySelectorAll(".status[data-status]").forEach(function (status) {
      if (seen[status.id] === status.dataset.status) return;
      seen[status.id] = status.dataset.status;
      var line = status.querySelector(".status__line");
      if (announce && line) said.push(line.textContent.replace(/\s+/g, " ").trim());
    });
    if (said.length) region.textContent = said.join(" ");
  }

  scan(false); // what is on the page at load is not news
  new MutationObserver(function () { scan(true); })
    .observe(document.body, { childList: true, subtree: true });
})();
