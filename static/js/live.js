// One status socket per page, and a connection the page can trust.
//
// Every card with data-watch="<kind>/<token>" is watched over the page's one
// websocket (data-live-path on #live): the page sends "watch <kind>/<token>
// <version>" for each card, those on the page at load and those htmx adds later,
// and the server answers with the card's current state if newer than the
// version the card shows, then every newer one. A frame is the status partial,
// handed to htmx's swap by its id (an older data-version never replaces a
// newer one).
//
// The server sends a heartbeat on the socket every few seconds. A socket that
// says nothing for data-silence-ms is taken for dead even if it never closed (a
// laptop that slept, a phone that changed networks): the page drops it, polls
// over HTTP (static/js/status-fallback.js, gated by data-socket on each card)
// and reconnects, as after a close. When the tab becomes visible again or the
// browser comes back online, each card re-reads its state over HTTP at once.
//
// A session's first submission gives it a new key, once. A socket whose handshake
// carried a key already gone (rotated, expired) is closed as "session changed": the
// page reconnects at once with its current cookie and watches its cards again.
// Every path, word and close code of the socket comes from #live's data attributes.
// Closed that way again before a socket got any frame (a heartbeat counts), it
// backs off as after any close (the new cookie may still be on its way), and
// after a few in a row it polls.
(function () {
  "use strict";

  var indicator = document.getElementById("live");
  if (!indicator || !window.WebSocket || !window.htmx) return;

  // The socket's path, words and close codes, from the server (realtime/context_processors.py).
  function setting(name) { return indicator.getAttribute("data-" + name); }
  var PATH = setting("live-path");
  var SILENCE_MS = parseInt(setting("silence-ms"), 10);
  var WATCH = setting("command") + " ";
  var HEARTBEAT = setting("heartbeat");
  var REFUSED = setting("refused") + " ";
  var STATUS = ".status[data-version]";
  // Its words, in the page's language (templates/realtime/live.html).
  var LABELS = {};
  ["connecting", "live", "reconnecting", "polling"].forEach(function (state) {
    LABELS[state] = setting("label-" + state);
  });
  // Closes that mean "do not come back" (refused, over the socket caps): the cards
  // then poll, and the page opens no other socket.
  var REFUSED_CODES = setting("turned-away-codes").split(" ").map(Number);
  var SESSION_CHANGED = Number(setting("session-changed-code"));
  var SESSION_CHANGED_LIMIT = 5;

  var socket = null;
  var heardAt = 0;
  var retries = 0;
  var retryTimer = null;
  var turnedAway = false;
  // "Session changed" closes in a row: since a socket last got a frame. Any frame counts, the
  // heartbeat too (daphne sends it once the socket's session has loaded): a watch
  // naming the version its card shows gets no frame while nothing is newer.
  var sessionChanges = 0;

  function cards() {
    return Array.prototype.slice.call(document.querySelectorAll("[data-watch]"));
  }

  function isFinal(card) {
    var status = card.querySelector(STATUS);
    return !!status && status.getAttribute("data-final") === "true";
  }

  function pending() {
    return cards().filter(function (card) {
      return !isFinal(card) && card.getAttribute("data-poll-status") !== "stopped";
    });
  }

  // The indicator changes only with the state: a heartbeat never touches the
  // DOM, so screen readers are not told about it.
  function show(state) {
    if (indicator.getAttribute("data-state") === state) return;
    indicator.setAttribute("data-state", state);
    indicator.hidden = false;
    indicator.querySelector(".live__label").textContent = LABELS[state];
  }

  function markCards(state) {
    cards().forEach(function (card) { card.setAttribute("data-socket", state); });
  }

  function send(card) {
    if (socket && socket.readyState === WebSocket.OPEN && !isFinal(card)) {
      // The version it shows: a card just rendered by the answer is not sent again.
      var shown = versionOf(card.querySelector(STATUS));
      socket.send(WATCH + card.getAttribute("data-watch") + (shown === null ? "" : " " + shown));
    }
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = null;
    if (socket || turnedAway || !pending().length) return;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var ws = new WebSocket(scheme + location.host + PATH);
    socket = ws;
    show(retries ? "reconnecting" : "connecting");
    ws.onopen = function () {
      if (ws !== socket) return;
      heardAt = Date.now();
      retries = 0;
      show("live");
      markCards("open");
      cards().forEach(send);
    };
    ws.onmessage = function (event) {
      if (ws !== socket) return;
      heardAt = Date.now();
      sessionChanges = 0;
      var data = String(event.data);
      if (data === HEARTBEAT) return;
      if (data.indexOf(REFUSED) === 0) return refused(data.slice(REFUSED.length));
      swap(data);
    };
    ws.onclose = function (event) {
      if (ws !== socket) return;
      if (event.code === SESSION_CHANGED) return sessionChanged();
      if (REFUSED_CODES.indexOf(event.code) !== -1) return turnAway();
      down();
    };
  }

  function turnAway() {
    turnedAway = true;
    socket = null;
    markCards("closed");
    show("polling");
  }

  // The session's key changed after this socket's handshake: come back now,
  // with the cookie the browser holds now; the open socket re-sends every watch.
  function sessionChanged() {
    sessionChanges += 1;
    if (sessionChanges > SESSION_CHANGED_LIMIT) return turnAway();
    if (sessionChanges > 1) {
      retries = sessionChanges - 2; // 1 s, 2 s, 4 s …: an open socket set it to 0
      return down();
    }
    socket = null;
    markCards("connecting");
    connect();
  }

  // Dead or closed: poll until a new socket is open, and reconnect with a
  // growing, jittered delay (1 s, 2 s, 4 s … at most 15 s).
  function down() {
    var ws = socket;
    socket = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      try { ws.close(); } catch (error) { /* already closing */ }
    }
    markCards("closed");
    if (!pending().length) return;
    show("reconnecting");
    var delay = Math.min(15000, 1000 * Math.pow(2, retries)) * (0.5 + Math.random() / 2);
    retries += 1;
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, delay);
  }

  function silenceCheck() {
    if (socket && socket.readyState === WebSocket.OPEN && Date.now() - heardAt > SILENCE_MS) {
      down();
    }
  }

  function refused(name) {
    cards().forEach(function (card) {
      // The server will not push this one (its link expired): polling says so too.
      if (card.getAttribute("data-watch") === name) card.setAttribute("data-socket", "closed");
    });
  }

  function parse(html) {
    var template = document.createElement("template");
    template.innerHTML = html; // inert: nothing in a template runs
    return template.content;
  }

  function versionOf(status) {
    var version = parseInt(status && status.getAttribute("data-version"), 10);
    return isNaN(version) ? null : version;
  }

  function swap(html) {
    Array.prototype.forEach.call(parse(html).children, function (incoming) {
      var current = incoming.id && document.getElementById(incoming.id);
      if (!current) return;
      var next = versionOf(incoming);
      var now = versionOf(current);
      if (next !== null && now !== null && next < now) return; // older: never shown
      // htmx swaps, settles and processes it, as every other fragment
      // (docs/decisions/: why this file, not the htmx ws extension).
      window.htmx.swap(current, incoming.outerHTML, { swapStyle: "outerHTML" });
    });
  }

  // Re-read each card's state over HTTP now (its hx-get, let through once by
  // status-fallback.js), and make sure a socket is on its way.
  function refresh() {
    pending().forEach(function (card) {
      if (!card.hasAttribute("hx-get")) return;
      card.setAttribute("data-refresh", "now");
      window.htmx.trigger(card, "live:refresh");
    });
    if (socket) silenceCheck();
    else if (pending().length) connect();
  }

  // A card htmx adds (a new submission) is watched over the socket already open.
  function added(element) {
    var found = element.matches && element.matches("[data-watch]") ? [element] : [];
    if (element.querySelectorAll) {
      found = found.concat(Array.prototype.slice.call(element.querySelectorAll("[data-watch]")));
    }
    found.forEach(function (card) {
      if (socket && socket.readyState === WebSocket.OPEN) {
        card.setAttribute("data-socket", "open");
        send(card);
      } else {
        card.setAttribute("data-socket", socket ? "connecting" : "closed");
      }
    });
    if (turnedAway) found.forEach(function (card) { card.setAttribute("data-socket", "closed"); });
    else if (found.length && !socket && !retryTimer) connect();
  }

  document.addEventListener("htmx:load", function (event) { added(event.detail.elt); });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") refresh();
  });
  window.addEventListener("online", refresh);
  setInterval(silenceCheck, 1000);

  cards().forEach(function (card) { card.setAttribute("data-socket", "connecting"); });
  connect();
})();
