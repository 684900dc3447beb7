// The web page's live parts: new requests as they finish (server-sent events), and the
// panels refreshed every few seconds. Values are set with textContent only: the server's
// HTML (already escaped) is the only markup ever inserted.
"use strict";

(function () {
  var rows = document.getElementById("traffic-rows");
  var panels = document.getElementById("panels");
  if (!rows || !panels) {
    return; // the login page
  }
  var KEEP = 50;

  function cell(text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) {
      td.className = className;
    }
    return td;
  }

  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function addRequest(p) {
    var at = new Date(p.at * 1000);
    var tr = document.createElement("tr");
    tr.appendChild(cell(two(at.getUTCHours()) + ":" + two(at.getUTCMinutes()) + ":" + two(at.getUTCSeconds())));
    tr.appendChild(cell(p.method + " " + p.route));
    tr.appendChild(cell(p.model || "-"));
    tr.appendChild(cell(p.session_label || p.session_id || "-"));
    tr.appendChild(cell(String(p.status), p.status < 400 ? "ok" : "error"));
    tr.appendChild(cell(p.duration_ms.toFixed(1) + " ms", "num"));
    var tokens = p.input_tokens === null || p.output_tokens === null ? "-" : p.input_tokens + " / " + p.output_tokens;
    tr.appendChild(cell(tokens, "num"));
    var body = document.getElementById("traffic-rows");
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > KEEP) {
      body.removeChild(body.lastChild);
    }
  }

  if (window.EventSource) {
    var events = new EventSource("/ui/events");
    events.addEventListener("request", function (event) {
      addRequest(JSON.parse(event.data));
    });
    events.addEventListener("logout", function () {
      events.close();
      window.location.reload();
    });
  }

  // Refresh everything but the live list (kept as the events built it), unless a button
  // has the focus: a click must land on the row it was aimed at.
  function refresh() {
    var focused = document.activeElement;
    if (focused && focused.tagName === "BUTTON") {
      return;
    }
    fetch("/ui/panels", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401 || response.status === 403) {
          window.location.reload();
          return null;
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === null) {
          return;
        }
        var live = document.getElementById("traffic-rows");
        var fresh = new DOMParser().parseFromString("<div>" + html + "</div>", "text/html");
        var next = fresh.getElementById("traffic-rows");
        if (next && live) {
          next.replaceWith(live);
        }
        var holder = fresh.body.firstChild;
        panels.replaceChildren.apply(panels, Array.prototype.slice.call(holder.childNodes));
      })
      .catch(function () {});
  }
  window.setInterval(refresh, 3000);
})();
