/* Live SMS counter for the compose page.
 *
 * The count is never computed here: every change (debounced) asks the server's
 * /api/v1/sms/preview/, which answers with notifications.encoding.segment, so the
 * page shows exactly what will be charged. Answers that arrive out of order are
 * dropped (only the latest request may paint). */
(function () {
  "use strict";
  var form = document.getElementById("compose");
  if (!form) { return; }
  var text = document.getElementById("text");
  var numbers = document.getElementById("numbers");
  var sender = document.getElementById("sender");
  var table = document.getElementById("counter");
  var url = form.getAttribute("data-preview-url");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var DEBOUNCE_MS = 150;
  var timer = null;
  var latest = 0;

  function recipients() {
    return numbers.value.split(/[\s,;]+/).filter(function (n) { return n.length > 0; }).length;
  }

  function paint(data) {
    var cells = table.querySelectorAll("[data-k]");
    for (var i = 0; i < cells.length; i++) {
      var key = cells[i].getAttribute("data-k");
      var value = data[key];
      cells[i].textContent = (value === null || value === undefined || value === "") ? (key === "error" ? "" : "-") : value;
    }
  }

  function ask() {
    var seq = ++latest;
    var body = JSON.stringify({ text: text.value, recipients: recipients(), sender: sender ? sender.value : "" });
    fetch(url, { method: "POST", credentials: "same-origin",
                 headers: { "Content-Type": "application/json", "X-CSRFToken": csrf }, body: body })
      .then(function (r) { return r.json(); })
      .then(function (data) { if (seq === latest) { paint(data); } })
      .catch(function () { /* the next keystroke asks again */ });
  }

  function schedule() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(ask, DEBOUNCE_MS);
  }

  text.addEventListener("input", schedule);
  numbers.addEventListener("input", schedule);
  if (sender) { sender.addEventListener("change", schedule); }
  ask();
})();
