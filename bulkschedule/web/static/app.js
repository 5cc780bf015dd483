/* bulkschedule upload page: drag and drop, a size check before sending, live run progress.
 * No framework and no inline script (the page's Content-Security-Policy forbids it). Values
 * from the server are only ever set with textContent, never parsed as HTML. */
(function () {
  "use strict";

  function mb(bytes) {
    return (bytes / 1048576).toFixed(bytes < 1048576 ? 2 : 1) + " MB";
  }

  function clock(seconds) {
    var s = Math.max(0, Math.floor(seconds));
    var m = Math.floor(s / 60);
    var r = s % 60;
    return m + ":" + (r < 10 ? "0" : "") + r;
  }

  // ------------------------------------------------------------------ upload form
  var form = document.getElementById("upload");
  if (form) {
    var input = document.getElementById("file");
    var drop = document.getElementById("drop");
    var chosen = document.getElementById("chosen");
    var max = Number(form.getAttribute("data-max-bytes") || 0);

    var check = function () {
      var f = input.files && input.files[0];
      chosen.className = "hint";
      if (!f) {
        chosen.textContent = "";
        return true;
      }
      if (!/\.(xlsx|csv)$/i.test(f.name)) {
        chosen.className = "error";
        chosen.textContent = f.name + ": only .xlsx and .csv sheets are accepted.";
        return false;
      }
      if (max && f.size > max) {
        chosen.className = "error";
        chosen.textContent = f.name + " is " + mb(f.size) + ": larger than the " + mb(max) +
          " upload limit. Split the sheet, or remove unused rows and columns.";
        return false;
      }
      chosen.textContent = f.name + " (" + mb(f.size) + ")";
      return true;
    };

    input.addEventListener("change", check);
    form.addEventListener("submit", function (ev) {
      if (!check()) {
        ev.preventDefault();
      }
    });
    ["dragenter", "dragover"].forEach(function (type) {
      drop.addEventListener(type, function (ev) {
        ev.preventDefault();
        drop.classList.add("over");
      });
    });
    ["dragleave", "drop"].forEach(function (type) {
      drop.addEventListener(type, function () {
        drop.classList.remove("over");
      });
    });
    drop.addEventListener("drop", function (ev) {
      ev.preventDefault();
      if (!ev.dataTransfer || !ev.dataTransfer.files.length) {
        return;
      }
      input.files = ev.dataTransfer.files;
      if (check()) {
        if (form.requestSubmit) {
          form.requestSubmit();
        } else {
          form.submit();
        }
      }
    });
  }

  // ------------------------------------------------------------------ run progress
  var panel = document.getElementById("progress");
  var url = panel && panel.getAttribute("data-events");
  if (!url || !window.EventSource) {
    return;
  }
  var lockEnd = 0; // performance.now() at which the lockout ends
  var set = function (id, text) {
    var el = document.getElementById(id);
    if (el) {
      el.textContent = String(text);
    }
  };

  var render = function (s) {
    panel.setAttribute("data-state", s.state);
    set("state", s.state_text || s.state);
    set("done", s.done);
    set("total", s.total);
    set("rate", s.rate);
    set("eta", s.eta === null || s.eta === undefined ? "-" : clock(s.eta));
    var bar = document.getElementById("bar");
    bar.max = Math.max(s.total, 1);
    bar.value = s.done;

    var list = document.getElementById("counts");
    while (list.firstChild) {
      list.removeChild(list.firstChild);
    }
    Object.keys(s.counts).forEach(function (status) {
      if (!s.counts[status]) {
        return;
      }
      var li = document.createElement("li");
      var badge = document.createElement("span");
      badge.className = "badge status-" + status.replace(/[^a-z-]/g, "");
      badge.textContent = status;
      var n = document.createElement("span");
      n.className = "n";
      n.textContent = String(s.counts[status]);
      li.appendChild(badge);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(n);
      list.appendChild(li);
    });

    lockEnd = s.lock_left > 0 ? performance.now() + s.lock_left * 1000 : 0;
    tick();

    var message = document.getElementById("message");
    if (s.message) {
      message.textContent = s.message;
      message.hidden = false;
    }
  };

  var tick = function () {
    var lock = document.getElementById("lock");
    var left = (lockEnd - performance.now()) / 1000;
    if (lockEnd && left > 0) {
      lock.hidden = false;
      set("lock-left", clock(Math.ceil(left)));
    } else {
      lock.hidden = true;
    }
  };
  setInterval(tick, 250);

  var source = new EventSource(url);
  source.addEventListener("progress", function (ev) {
    render(JSON.parse(ev.data));
  });
  source.addEventListener("done", function (ev) {
    source.close();
    render(JSON.parse(ev.data));
    // The finished page (results link, rows needing attention) is rendered by the server.
    window.location.reload();
  });
})();
