// The approval page, enhanced. Without this script the page still works: every card is a
// plain form, and new requests show up on reload. With it:
// - new requests arrive live over server-sent events, already rendered and escaped by the
//   server (cards are parsed inert in a <template>, never as script);
// - arrivals and decisions made elsewhere are announced in a polite live region;
// - each card counts down to its expiry and is disabled when it expires;
// - Approve with an empty password asks for it instead of a round trip, and a form is sent once.
(function () {
  "use strict";
  var list = document.getElementById("pending");
  if (!list) { return; }
  var empty = document.getElementById("empty");
  var announcer = document.getElementById("announcer");
  var liveState = document.getElementById("live-state");
  var baseTitle = document.title;

  function cards() { return list.querySelectorAll(".approval"); }

  function text(card, selector) {
    var node = card.querySelector(selector);
    return node ? node.textContent.replace(/\s+/g, " ").trim() : "";
  }

  function refresh() {
    var waiting = list.querySelectorAll(".approval:not(.expired)").length;
    if (empty) { empty.hidden = cards().length > 0; }
    document.title = waiting > 0 ? "(" + waiting + ") " + baseTitle : baseTitle;
  }

  function announce(message) {
    if (!announcer) { return; }
    announcer.textContent = "";
    window.setTimeout(function () { announcer.textContent = message; }, 50);
  }

  function showLive(message, ok) {
    if (!liveState) { return; }
    liveState.textContent = message;
    liveState.classList.toggle("off", !ok);
    liveState.hidden = false;
  }

  // Expiry: counted from when the card was rendered, so the device's clock does not matter.
  function track(card) {
    var seconds = parseInt(card.getAttribute("data-expires-in"), 10) || 0;
    card.deadline = Date.now() + seconds * 1000;
  }

  function duration(seconds) {
    var minutes = Math.floor(seconds / 60);
    return (minutes > 0 ? minutes + " min " : "") + (seconds % 60) + " s";
  }

  function expire(card) {
    card.classList.add("expired");
    var expires = card.querySelector(".expires");
    if (expires) { expires.textContent = "Expired. Ask the agent to try again."; }
    card.querySelectorAll("button, input[type=password]").forEach(function (control) {
      control.disabled = true;
    });
  }

  function tick() {
    var now = Date.now();
    cards().forEach(function (card) {
      if (card.classList.contains("expired") || !card.deadline) { return; }
      var left = Math.max(0, Math.round((card.deadline - now) / 1000));
      if (left === 0) {
        expire(card);
        refresh();
      } else {
        var out = card.querySelector(".expires-in");
        if (out) { out.textContent = duration(left); }
      }
    });
  }

  cards().forEach(track);
  window.setInterval(tick, 1000);
  refresh();

  // Approve needs the password; say so at once. Each form is sent once.
  list.addEventListener("submit", function (event) {
    var form = event.target;
    var submitter = event.submitter;
    if (form.getAttribute("data-sending")) { event.preventDefault(); return; }
    if (submitter && submitter.value === "approve") {
      var field = form.querySelector("input[name=password]");
      if (field && field.value === "") {
        event.preventDefault();
        var hint = form.querySelector(".hint");
        if (hint) {
          hint.textContent = "Enter your password to approve.";
          hint.classList.add("invalid");
        }
        field.setAttribute("aria-invalid", "true");
        field.focus();
        return;
      }
    }
    form.setAttribute("data-sending", "1");
    form.setAttribute("aria-busy", "true");
  });

  list.addEventListener("input", function (event) {
    var field = event.target;
    if (field.name !== "password" || !field.hasAttribute("aria-invalid")) { return; }
    field.removeAttribute("aria-invalid");
    var hint = field.form && field.form.querySelector(".hint.invalid");
    if (hint) {
      hint.textContent = "Needed to approve. Deny needs no password.";
      hint.classList.remove("invalid");
    }
  });

  // The outcome of the last decision (or the error) is read out and has the focus.
  var outcome = document.getElementById("outcome");
  if (outcome) { outcome.focus(); }

  if (!window.EventSource) { return; }
  var source = new EventSource(
    list.getAttribute("data-stream") + "?since=" + encodeURIComponent(list.getAttribute("data-since"))
  );

  source.addEventListener("open", function () {
    showLive("Live: new requests appear here by themselves.", true);
  });

  source.addEventListener("error", function () {
    if (source.readyState === EventSource.CLOSED) {
      showLive("Live updates stopped. Reload the page to see new requests.", false);
    } else {
      showLive("Reconnecting…", false);
    }
  });

  source.addEventListener("request", function (event) {
    var data = JSON.parse(event.data);
    if (document.getElementById("req-" + data.id)) { return; }
    var template = document.createElement("template");
    template.innerHTML = data.html;
    var card = template.content.querySelector(".approval");
    if (!card) { return; }
    track(card);
    card.classList.add("arrived");
    list.insertBefore(card, list.firstChild);
    refresh();
    var summary = text(card, ".summary");
    var code = text(card, ".binding-message");
    announce("New request from " + text(card, ".agent-name") + (summary ? ": " + summary : "") +
             (code ? ". Code " + code : "") + ".");
  });

  source.addEventListener("decided", function (event) {
    var data = JSON.parse(event.data);
    var card = document.getElementById("req-" + data.id);
    if (!card) { return; }
    var agent = text(card, ".agent-name");
    card.remove();
    refresh();
    announce("The request from " + agent + " was " + (data.status === "denied" ? "denied" : "approved") +
             " in another window.");
  });
})();
