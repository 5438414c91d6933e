// Progressive enhancement only: every page works without it (times then read in UTC).
(function () {
  "use strict";

  var hasZone = /([zZ]|[+-]\d\d:?\d\d)$/;

  function parseInstant(iso) {
    return new Date(hasZone.test(iso) ? iso : iso + "Z");
  }

  function pad(n) {
    return String(n).padStart(2, "0");
  }

  function localInputValue(date) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      "T" + pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  // Times in the viewer's zone; the UTC instant stays on hover.
  function localizeTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var iso = el.getAttribute("datetime");
      var date = parseInstant(iso);
      if (isNaN(date)) return;
      el.textContent = date.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit"
      });
      el.title = iso + " (UTC)";
    });
  }

  function setUpFilters(form) {
    var windowField = form.querySelector("[data-window]");
    var rangeFields = form.querySelectorAll("[data-range]");
    form.querySelectorAll("input[data-instant]").forEach(function (input) {
      var iso = input.getAttribute("data-instant");
      if (iso) {
        var date = parseInstant(iso);
        if (!isNaN(date)) input.value = localInputValue(date);
      }
    });
    function showRange() {
      var custom = windowField.value === "custom";
      rangeFields.forEach(function (el) { el.hidden = !custom; });
    }
    windowField.addEventListener("change", showRange);
    showRange();

    // Submit only the filters in use, with local date-times sent as UTC instants.
    form.addEventListener("submit", function () {
      var custom = windowField.value === "custom";
      form.querySelectorAll("input[data-instant]").forEach(function (input) {
        if (!custom || !input.value) {
          input.disabled = true;
          return;
        }
        var hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = input.name;
        hidden.value = new Date(input.value).toISOString().replace(".000Z", "Z");
        input.disabled = true;
        form.appendChild(hidden);
      });
      if (custom) windowField.disabled = true;
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && !el.disabled && el.value === "") el.disabled = true;
      });
    });
  }

  // "Load more" appends the next keyset page instead of leaving the page.
  function setUpLoadMore() {
    document.addEventListener("click", function (event) {
      var link = event.target.closest("[data-load-more]");
      if (!link) return;
      event.preventDefault();
      link.setAttribute("aria-busy", "true");
      fetch(link.href + "&fragment=1", { credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error(response.status);
          return response.text();
        })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, "text/html");
          var rows = document.getElementById("log-rows");
          var first = null;
          doc.querySelectorAll("#log-rows > tr").forEach(function (row) {
            var adopted = document.importNode(row, true);
            rows.appendChild(adopted);
            first = first || adopted;
          });
          localizeTimes(rows);
          document.getElementById("log-more").replaceWith(document.importNode(doc.getElementById("log-more"), true));
          if (first) first.querySelector("a").focus();
        })
        .catch(function () {
          window.location.href = link.href;
        });
    });
  }

  document.querySelectorAll("[data-timezone]").forEach(function (input) {
    input.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  });
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) event.preventDefault();
    });
  });
  document.querySelectorAll("[data-secret]").forEach(function (input) {
    input.addEventListener("focus", function () { input.select(); });
  });
  var filters = document.querySelector("[data-filters]");
  if (filters) setUpFilters(filters);
  localizeTimes(document);
  setUpLoadMore();
})();
