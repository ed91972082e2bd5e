// The status page: renders `state` and `frame` events from the pillow, nothing else.
"use strict";

const $ = (id) => document.getElementById(id);
const socket = io("/pillow", { transports: ["websocket", "polling"] });
const canvas = $("leds");
const ctx = canvas.getContext("2d");
let current = null;

socket.on("connect", () => setBadge($("connection"), "live", "ok"));
socket.on("disconnect", () => setBadge($("connection"), "reconnecting…", "warn"));
socket.io.on("reconnect_attempt", () => setBadge($("connection"), "reconnecting…", "warn"));

function setBadge(el, text, kind) {
  el.textContent = text;
  el.className = "badge " + kind;
}

socket.on("state", (s) => {
  current = s;
  $("name").textContent = s.pillow;
  $("scene").textContent = s.scene;
  $("effect").textContent = s.effect;
  const m = s.message;
  $("message").hidden = !(m && (m.from || m.text));
  $("sender").textContent = (m && m.from) || "someone";
  $("text").textContent = (m && m.text) || "";
  $("version").textContent = "pillowd " + s.version;
  $("milliamps").textContent = s.leds.milliamps + " mA";
  setBadge($("queue-online"), s.queue.online ? "online" : "offline", s.queue.online ? "ok" : "warn");
  $("queue-reason").textContent = s.queue.online ? "" : (s.queue.reason || "");
  const counts = $("counts");
  counts.replaceChildren();
  for (const k of ["applied", "superseded", "expired", "duplicate", "rejected"]) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = s.queue[k];
    counts.append(dt, dd);
  }
  const list = $("recent");
  list.replaceChildren();
  for (const r of s.recent) {
    const li = document.createElement("li");
    li.className = r.outcome;
    li.textContent = `${r.outcome} · ${r.scene || "?"}` + (r.from ? ` from ${r.from}` : "") +
      (r.reason ? ` — ${r.reason}` : "");
    li.title = r.at;
    list.append(li);
  }
  tick();
});

function tick() {
  if (!current || !current.until) { $("until").textContent = ""; return; }
  const left = Math.max(0, (Date.parse(current.until) - Date.now()) / 1000);
  $("until").textContent = `back to idle in ${left.toFixed(0)} s`;
}
setInterval(tick, 1000);

socket.on("frame", (buf) => {
  const bytes = new Uint8Array(buf);
  const n = bytes.length / 3;
  const w = canvas.width / Math.max(n, 1);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < n; i++) {
    ctx.fillStyle = `rgb(${bytes[3 * i]},${bytes[3 * i + 1]},${bytes[3 * i + 2]})`;
    ctx.fillRect(i * w, 0, Math.max(w - 1, 1), canvas.height);
  }
});
