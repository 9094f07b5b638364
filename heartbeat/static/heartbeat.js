// Keeps the Heartbeat pages live: every element with data-stat follows the
// stats WebSocket; "time since" also ticks locally between messages.
"use strict";

(function () {
  const UNITS = [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]];

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    for (let i = 0; i < UNITS.length; i++) {
      if (seconds >= UNITS[i][1] || UNITS[i][1] === 1) {
        const parts = [];
        for (const [unit, size] of UNITS.slice(i, i + 2)) {
          const count = Math.floor(seconds / size);
          seconds -= count * size;
          if (count || parts.length === 0) parts.push(count + " " + unit + (count === 1 ? "" : "s"));
        }
        return parts.join(" ");
      }
    }
    return "0 seconds";
  }

  function timestamp(unix) {
    if (unix === null || unix === undefined) return "never";
    return new Date(unix * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
  }

  function format(kind, value, stats) {
    if (kind === "timestamp") return timestamp(value);
    if (kind === "duration") {
      if (value === stats.last_seen_relative && stats.last_seen === null) return "–";
      return duration(value);
    }
    if (kind === "number") return Number(value).toLocaleString("en-US");
    return String(value);
  }

  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  let latest = null;
  let receivedAt = 0;

  function render() {
    if (!latest) return;
    const stats = Object.assign({}, latest);
    if (stats.last_seen !== null) {
      // Between messages, let the relative times run on.
      const drift = Math.floor((Date.now() - receivedAt) / 1000);
      stats.last_seen_relative += drift;
      stats.longest_absence = Math.max(stats.longest_absence, stats.last_seen_relative);
    }
    document.querySelectorAll("[data-stat]").forEach((el) => {
      const text = format(el.dataset.format, stats[el.dataset.stat], stats);
      if (el.textContent !== text) el.textContent = text;
    });
    const tbody = document.getElementById("devices");
    if (tbody) {
      const rows = stats.devices.map((d) => {
        const tr = document.createElement("tr");
        tr.append(cell(d.id), cell(d.name), cell(timestamp(d.last_beat)),
                  cell(Number(d.num_beats).toLocaleString("en-US")));
        return tr;
      });
      tbody.replaceChildren(...rows);
    }
  }

  function setStatus(state) {
    const el = document.getElementById("live-status");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = state === "live" ? "live" : state === "offline" ? "offline, retrying…" : "connecting…";
  }

  function connect(delay) {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + location.host + "/api/stats/ws");
    socket.onopen = () => setStatus("live");
    socket.onmessage = (event) => {
      latest = JSON.parse(event.data);
      receivedAt = Date.now();
      render();
    };
    socket.onclose = () => {
      setStatus("offline");
      const next = Math.min(delay * 2, 30000);
      setTimeout(() => connect(next), delay);
    };
  }

  document.addEventListener("DOMContentLoaded", () => {
    connect(1000);
    setInterval(render, 1000);
  });
})();
