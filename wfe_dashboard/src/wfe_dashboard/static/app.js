// wfe dashboard: live updates over server-sent events and confirmations for actions.
// Plain JavaScript, no framework and nothing loaded from elsewhere.
(function () {
  "use strict";

  // Actions: ask first; the server refuses an action without confirmed=1 (and shows
  // its own confirmation page to a browser without this script).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) {
      return;
    }
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      return;
    }
    var field = form.querySelector("input[name=confirmed]");
    if (field) {
      field.value = "1";
    }
  });

  var live = document.getElementById("live");
  var label = document.getElementById("live-status");
  function say(text, state) {
    if (label) {
      label.textContent = text;
      label.dataset.state = state;
    }
  }
  if (!live || !live.dataset.live) {
    return;
  }
  if (!window.EventSource) {
    say("no live updates (reload to refresh)", "off");
    return;
  }

  var refreshing = false;
  var again = false;
  function refresh(version) {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    fetch(window.location.href, {
      headers: { "X-Partial": "1" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        live.innerHTML = html;
        live.dataset.version = version;
        live.dataset.refreshed = String(Number(live.dataset.refreshed || "0") + 1);
        say("live · updated " + new Date().toLocaleTimeString(), "live");
      })
      .catch(function (error) {
        say("live · refresh failed: " + error.message, "error");
      })
      .then(function () {
        refreshing = false;
        if (again) {
          again = false;
          refresh(live.dataset.version);
        }
      });
  }

  var url = live.dataset.live;
  url += (url.indexOf("?") < 0 ? "?" : "&") + "v=" + encodeURIComponent(live.dataset.version || "");
  var source = new EventSource(url);
  source.addEventListener("open", function () {
    say("live", "live");
  });
  source.addEventListener("error", function () {
    say("reconnecting…", "reconnecting");
  });
  source.addEventListener("change", function (event) {
    refresh(event.data);
  });
  window.addEventListener("pagehide", function () {
    source.close();
  });
})();
