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
    // the facet counts, saved views and downloads fold with the filters they set or take
    var beside = document.querySelectorAll(".facets, .beside-filters");
    function show(open) {
      form.hidden = !open;
      beside.forEach(function (el) { el.hidden = !open; });
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    }
    toggle.addEventListener("click", function () { show(form.hidden); });
    form.parentNode.insertBefore(toggle, form);
    show(form.querySelector(".has-error, [aria-invalid=true]") !== null);
  }

  // The timeline (templates/_timeline.html): its ticks and bar labels in the viewer's zone, the zone named,
  // and a drag across bars narrows the window to them (a click on one bar is its own link).
  function setUpTimeline(figure) {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    var shortZone = localText(new Date()).split(" ").pop();
    figure.querySelectorAll("[data-zone-name]").forEach(function (el) {
      el.textContent = zone + (shortZone && shortZone !== zone ? " (" + shortZone + ")" : "");
    });
    function shown(date, unit) {
      var text = localText(date);
      if (unit === "hour") return text.slice(5, 16);
      if (unit === "week") return "week of " + text.slice(0, 10);
      return text.slice(0, 10);
    }
    figure.querySelectorAll("time[data-tick]").forEach(function (el) {
      var date = parseInstant(el.getAttribute("datetime"));
      if (!isNaN(date)) el.textContent = shown(date, el.getAttribute("data-tick"));
    });
    var bars = Array.prototype.slice.call(figure.querySelectorAll("[data-bucket]"));
    bars.forEach(function (bar) {
      var label = bar.getAttribute("aria-label");
      var rest = label.slice(label.indexOf(": "));
      var since = parseInstant(bar.getAttribute("data-since"));
      var until = parseInstant(bar.getAttribute("data-until"));
      var local = localText(since).slice(0, 16) + " – " + localText(until).slice(11);
      bar.setAttribute("aria-label", local + rest);
      bar.querySelector("title").textContent = local + rest;
    });
    var first = null, last = null, dragged = false;
    function mark() {
      var lo = Math.min(bars.indexOf(first), bars.indexOf(last));
      var hi = Math.max(bars.indexOf(first), bars.indexOf(last));
      bars.forEach(function (bar, i) { bar.classList.toggle("picked", first !== null && i >= lo && i <= hi); });
      return [bars[lo], bars[hi]];
    }
    figure.addEventListener("pointerdown", function (event) {
      var bar = event.target.closest("[data-bucket]");
      if (!bar || event.button !== 0) return;
      first = last = bar;
      dragged = false;
      event.preventDefault();
    });
    figure.addEventListener("pointermove", function (event) {
      if (first === null) return;
      var under = document.elementFromPoint(event.clientX, event.clientY);
      var bar = under && under.closest("[data-bucket]");
      if (bar && bar !== last) {
        last = bar;
        dragged = dragged || bar !== first;
        mark();
      }
    });
    document.addEventListener("pointerup", function () {
      if (first === null) return;
      var ends = mark();
      var wasDrag = dragged;
      first = last = null;
      if (!wasDrag) {
        mark();
        return; // a click: the bar's own link
      }
      var url = new URL(ends[0].getAttribute("href"), window.location.href);
      url.searchParams.set("until", new URL(ends[1].getAttribute("href"), window.location.href).searchParams.get("until"));
      window.location.href = url.pathname + url.search;
    });
    figure.addEventListener("click", function (event) {
      if (dragged) event.preventDefault();
    });
  }

  var timeline = document.querySelector("[data-timeline]");
  if (timeline) setUpTimeline(timeline);

  var filters = document.querySelector("[data-filters]");
  if (filters) {
    setUpFilters(filters);
    foldOnSmallScreens(filters);
  }
  localizeTimes(document);
  setUpLoadMore();
})();
