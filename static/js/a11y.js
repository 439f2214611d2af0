// Accessibility helpers for the feedback page. A static file: the
// Content-Security-Policy allows no inline script.
(function () {
  "use strict";

  // 1. Read out each submission's status changes in one polite live region.
  //
  // The websocket swaps a status element by id, replacing it whole: a live
  // region on it would vanish with it, and one on its card would re-read the
  // whole timeline at every progress step. So one stable region for the page
  // says just the status line, once per change of status.
  var region = document.getElementById("announcer");
  var seen = {};

  function scan(announce) {
    var said = [];
    document.querySelectorAll(".status[data-status]").forEach(function (status) {
      if (seen[status.id] === status.dataset.status) return;
      seen[status.id] = status.dataset.status;
      var line = status.querySelector(".status__line");
      if (announce && line) said.push(line.textContent.replace(/\s+/g, " ").trim());
    });
    if (region && said.length) region.textContent = said.join(" ");
  }

  scan(false); // what is on the page at load is not news
  new MutationObserver(function () { scan(true); })
    .observe(document.body, { childList: true, subtree: true });

  // 2. Keep the keyboard user's place when htmx swaps the form.
  //
  // The buttons are disabled while the request is in flight, which drops
  // focus to <body>; give it back: to the first field in error, else to the
  // button that was pressed.
  var pressed = null;
  document.addEventListener("submit", function (event) {
    pressed = event.submitter && event.submitter.id;
  }, true);
  document.addEventListener("htmx:afterSettle", function (event) {
    if (!pressed || event.detail.elt.id !== "feedback-form") return;
    var active = document.activeElement;
    if (active && active !== document.body) return; // the person moved on: leave them be
    var form = document.getElementById("feedback-form");
    var target = (form && form.querySelector('[aria-invalid="true"]')) ||
      document.getElementById(pressed);
    pressed = null;
    if (target) target.focus();
  });
})();
