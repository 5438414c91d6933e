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

  // Times in the viewer's zone, in the shape the server writes in UTC ("2026-03-14 10:26:53 CET"), the zone
  // named; the UTC instant stays on hover.
  var zoned = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    second: "2-digit", hourCycle: "h23", timeZoneName: "short"
  });

  function localText(date) {
    var part = {};
    zoned.formatToParts(date).forEach(function (p) { part[p.type] = p.value; });
    return part.year + "-" + part.month + "-" + part.day + " " + part.hour + ":" + part.minute + ":" +
      part.second + " " + part.timeZoneName;
  }

  function localizeTimes(root) {
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var iso = el.getAttribute("datetime");
      var date = parseInstant(iso);
      if (isNaN(date)) return;
      el.textContent = localText(date);
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

    // Submit only the filters in use, with local date-times sent as UTC instants. The form is put back
    // as it was once the submission is on its way: an export downloads, and the page (and form) stay.
    form.addEventListener("submit", function () {
      var custom = windowField.value === "custom";
      var changed = [];
      setTimeout(function () {
        changed.forEach(function (undo) { undo(); });
      }, 0);
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
        changed.push(function () { hidden.remove(); });
      });
      if (custom) windowField.disabled = true;
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && !el.disabled && el.value === "") el.disabled = true;
      });
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.disabled) changed.push(function () { el.disabled = false; });
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
  // On a phone the filter form would fill more than a screen before the first entry: it folds behind a
  // button that says how many filters are in use (and stays open when one of them needs fixing).
  function foldOnSmallScreens(form) {
    if (!window.matchMedia("(max-width: 640px)").matches) return;
    var inUse = 0;
    new URLSearchParams(window.location.search).forEach(function (value, name) {
      if (value && name !== "cursor" && name !== "fragment") inUse += 1;
    });
    form.id = form.id || "activity-filters";
    var toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "filters-toggle";
    toggle.setAttribute("aria-controls", form.id);
    toggle.textContent = "Filters" + (inUse ? " (" + inUse + " in use)" : "");
    function show(open) {
      form.hidden = !open;
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
    toggle.addEventListener("click", function () { show(form.hidden); });
    form.parentNode.insertBefore(toggle, form);
    show(form.querySelector(".has-error, [aria-invalid=true]") !== null);
  }

  var filters = document.querySelector("[data-filters]");
  if (filters) {
    setUpFilters(filters);
    foldOnSmallScreens(filters);
  }
  localizeTimes(document);
  setUpLoadMore();
})();
