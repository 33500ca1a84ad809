/* Live progress on the campaign list: every 3 s, each running/scheduled/paused row asks
 * its /api/v1/sms/campaigns/<id>/progress/ and updates its bar; rows that finished stop. */
(function () {
  "use strict";
  var INTERVAL_MS = 3000;
  function refresh() {
    var rows = document.querySelectorAll("tr[data-live='1']");
    rows.forEach(function (row) {
      fetch(row.getAttribute("data-progress-url"), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (p) {
          row.querySelector("progress").value = p.percent;
          row.querySelector("[data-k=percent]").textContent = p.done + " / " + p.total + " (" + p.percent + "%)";
          row.querySelector("[data-k=status]").textContent = p.status;
          if (p.status === "completed" || p.status === "cancelled") { row.setAttribute("data-live", "0"); }
        })
        .catch(function () {});
    });
  }
  refresh();
  setInterval(refresh, INTERVAL_MS);
})();
