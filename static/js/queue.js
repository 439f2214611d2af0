// Keeps the numbers of a queued status moving between two server renders:
// the Undo countdown, and the place in the queue with its start estimate.
// It changes only numbers inside markup the server rendered (the status
// partial); it never builds a status itself.
//
// The place comes from one queue-wide element, #feedback-queue, which the
// page's socket swaps in at every change of the queue (templates/feedback/
// detail.html#queue): data-line lists every queued feedback's submit time,
// oldest first, so a status's place is the number of times before its own
// data-queued-at; the start estimate is max(0, base + ahead * step) seconds.
(function () {
  "use strict";

  var QUEUED = '.status[data-queued-at]';
  var queue = { at: 0, line: null, base: null, step: null, seen: 0 };

  function number(value) {
    var parsed = parseFloat(value);
    return isNaN(parsed) ? null : parsed;
  }

  function readQueue() {
    var element = document.getElementById("feedback-queue");
    if (!element || !element.hasAttribute("data-at")) return;
    var at = number(element.getAttribute("data-at"));
    if (at === null || at <= queue.at) return;
    queue.at = at;
    queue.seen = Date.now();
    queue.line = (element.getAttribute("data-line") || "").split(" ")
      .filter(Boolean).map(Number);
    queue.base = number(element.getAttribute("data-eta-base"));
    queue.step = number(element.getAttribute("data-eta-step"));
  }

  function aheadOf(queuedAt) {
    var count = 0;
    for (var i = 0; i < queue.line.length && queue.line[i] < queuedAt; i++) count++;
    return count;
  }

  // Deadlines are kept in this browser's clock: the server says "N s left"
  // when it renders, and the browser counts from when it saw that.
  function deadline(element, attribute, seconds) {
    var key = "deadline" + attribute;
    if (!element[key]) element[key] = Date.now() + seconds * 1000;
    return element[key];
  }

  function secondsTo(when) {
    return Math.ceil((when - Date.now()) / 1000);
  }

  function undoLeft(status) {
    var actions = status.querySelector("[data-undo-left]");
    if (!actions) return 0;
    var left = secondsTo(deadline(actions, "undo", number(actions.getAttribute("data-undo-left"))));
    var shown = actions.querySelector(".status__countdown-seconds");
    if (left <= 0) {
      actions.hidden = true; // the window is over: a worker may take it now
      return 0;
    }
    if (shown && shown.textContent !== String(left)) shown.textContent = String(left);
    return left;
  }

  function update(status) {
    var undo = undoLeft(status);
    var rendered = number(status.getAttribute("data-rendered-at"));
    if (queue.line === null || rendered === null || queue.at <= rendered) return;
    var queuedAt = number(status.getAttribute("data-queued-at"));
    if (queue.line.indexOf(queuedAt) === -1) return; // it left the line: its own update follows
    var ahead = aheadOf(queuedAt);
    if (status.getAttribute("data-ahead") !== String(ahead)) {
      status.setAttribute("data-ahead", String(ahead));
      var count = status.querySelector(".status__ahead");
      if (count) count.textContent = String(ahead);
    }
    if (queue.base === null || queue.step === null) return;
    var startsIn = Math.max(0, queue.base + ahead * queue.step) - (Date.now() - queue.seen) / 1000;
    var seconds = Math.max(1, Math.ceil(startsIn), undo);
    var eta = status.querySelector(".status__eta");
    var shownEta = status.querySelector(".status__eta-seconds");
    if (eta) eta.hidden = false;
    if (shownEta && shownEta.textContent !== String(seconds)) shownEta.textContent = String(seconds);
  }

  function tick() {
    readQueue();
    document.querySelectorAll(QUEUED + '[data-status="queued"]').forEach(update);
  }

  document.addEventListener("htmx:oobAfterSwap", tick);
  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("htmx:load", tick); // a frame static/js/live.js swapped in
  document.addEventListener("DOMContentLoaded", tick);
  setInterval(tick, 1000);
})();
