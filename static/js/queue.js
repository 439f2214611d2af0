// Keeps the numbers of a queued status moving between two server renders:
// the Undo countdown, and the place in the queue with its start estimate.
// It changes only numbers inside markup the server rendered (the status
// partial); it never builds a status itself.
//
// The place comes from one queue-wide element, #feedback-queue, which the
// page's socket swaps in at every change of the queue (templates/feedback/
// detail.html#queue), at most a few times a second and less often the longer
// the line: data-line lists the submit times of the first queued feedback,
// oldest first, and data-count how many are queued in all. A status's place is
// the number of times before its own data-queued-at; one further back than the
// listed head shows "at least <listed> ahead" (its exact place is the server's,
// when it renders). The start estimate is max(0, base + ahead * step) seconds,
// counted down between events; until an event newer than the status arrives,
// the estimate the server rendered (data-starts-in) counts down.
(function () {
  "use strict";

  // The server gives data-queued-at only to a status waiting in the line.
  var IN_LINE = ".status[data-queued-at]";
  var queue = { at: 0, line: null, count: null, base: null, step: null, seen: 0 };

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
    queue.count = number(element.getAttribute("data-count"));
    queue.base = number(element.getAttribute("data-eta-base"));
    queue.step = number(element.getAttribute("data-eta-step"));
  }

  // { ahead, atLeast } for a feedback submitted at queuedAt, or null when it is
  // not in the line any more (its own update follows).
  function placeOf(queuedAt) {
    var line = queue.line;
    var listedAll = queue.count === null || queue.count <= line.length;
    if (!listedAll && line.length && queuedAt > line[line.length - 1]) {
      return { ahead: line.length, atLeast: true };
    }
    if (line.indexOf(queuedAt) === -1) return null;
    var count = 0;
    while (count < line.length && line[count] < queuedAt) count++;
    return { ahead: count, atLeast: false };
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

  function setText(element, text) {
    if (element && element.textContent !== text) element.textContent = text;
  }

  function showPlace(status, place) {
    var exact = status.querySelector(".status__place-exact");
    var beyond = status.querySelector(".status__place-beyond");
    if (exact) exact.hidden = place.atLeast;
    if (beyond) beyond.hidden = !place.atLeast;
    if (place.atLeast) {
      status.removeAttribute("data-ahead");
      status.setAttribute("data-ahead-at-least", String(place.ahead));
      setText(status.querySelector(".status__ahead-at-least"), String(place.ahead));
    } else {
      status.removeAttribute("data-ahead-at-least");
      status.setAttribute("data-ahead", String(place.ahead));
      setText(status.querySelector(".status__ahead"), String(place.ahead));
    }
  }

  // Seconds until it starts by the estimate the server rendered, counted down; null if none.
  function renderedStartsIn(status) {
    var rendered = number(status.getAttribute("data-starts-in"));
    if (rendered === null) return null;
    return (deadline(status, "start", rendered) - Date.now()) / 1000;
  }

  function update(status) {
    var undo = undoLeft(status);
    var rendered = number(status.getAttribute("data-rendered-at"));
    if (rendered === null) return;
    var startsIn = renderedStartsIn(status);
    if (queue.line !== null && queue.at > rendered) {
      var place = placeOf(number(status.getAttribute("data-queued-at")));
      if (place === null) return; // it left the line: its own update follows
      showPlace(status, place);
      if (queue.base !== null && queue.step !== null) {
        var fromEvent = Math.max(0, queue.base + place.ahead * queue.step) -
          (Date.now() - queue.seen) / 1000;
        // Further back than the listed head, the event gives a lower bound only: the
        // server's estimate for its exact place, counted down, may well be later.
        startsIn = place.atLeast && startsIn !== null ? Math.max(startsIn, fromEvent) : fromEvent;
      }
    }
    if (startsIn === null) return;
    var eta = status.querySelector(".status__eta");
    if (eta) eta.hidden = false;
    setText(status.querySelector(".status__eta-seconds"), String(Math.max(1, Math.ceil(startsIn), undo)));
  }

  function tick() {
    readQueue();
    document.querySelectorAll(IN_LINE).forEach(update);
  }

  document.addEventListener("htmx:oobAfterSwap", tick);
  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("htmx:load", tick);
  document.addEventListener("DOMContentLoaded", tick);
  setInterval(tick, 1000);
})();
