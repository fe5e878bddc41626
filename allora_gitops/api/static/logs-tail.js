// The deployment page's live tail: poll the page's logs endpoint (session cookie, same origin) every second and
// append the lines that came since the last one shown. Text only (textContent): a model's output is never HTML.
(function () {
  "use strict";
  var list = document.getElementById("logs-lines");
  if (!list) { return; }
  var status = document.getElementById("logs-status");
  var empty = document.getElementById("logs-empty");
  var cursor = list.getAttribute("data-cursor") || "0-0";  // "0-0": before every line
  var level = list.getAttribute("data-level") || "";
  var MAX_SHOWN = 2000;

  function row(line) {
    var li = document.createElement("li");
    li.className = "log-" + line.level;
    var parts = [["log-ts", line.ts], ["log-level", String(line.level).toUpperCase()], ["log-msg", (line.event === "print" || line.event === "log" ? "" : "[" + line.event + "] ") + line.message]];
    parts.forEach(function (part, i) {
      if (i) { li.appendChild(document.createTextNode(" ")); }
      var span = document.createElement("span");
      span.className = part[0];
      span.textContent = part[1];
      li.appendChild(span);
    });
    return li;
  }

  function poll() {
    var url = list.getAttribute("data-src") + "?after=" + encodeURIComponent(cursor) + (level ? "&level=" + encodeURIComponent(level) : "");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) {
        if (response.status === 401) { status.textContent = "Signed out: sign in again to follow the log."; return null; }
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (answer) {
        if (!answer) { return; }
        var atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
        answer.lines.forEach(function (line) { list.appendChild(row(line)); });
        while (list.children.length > MAX_SHOWN) { list.removeChild(list.firstChild); }
        if (answer.lines.length) { empty.hidden = true; }
        if (atBottom) { list.scrollTop = list.scrollHeight; }
        cursor = answer.cursor || cursor;
        status.textContent = "Live: new lines appear as the model prints them.";
        window.setTimeout(poll, 1000);
      })
      .catch(function (error) {
        status.textContent = "The log cannot be read right now (" + error.message + "); trying again.";
        window.setTimeout(poll, 5000);
      });
  }

  list.scrollTop = list.scrollHeight;  // a tail: the newest lines in view
  status.textContent = "Live: new lines appear as the model prints them.";
  window.setTimeout(poll, 1000);
})();
