// The status page: draws the pillow from `state` and `frame` events and sends controls.
"use strict";

const $ = (id) => document.getElementById(id);
const OUTCOMES = ["applied", "superseded", "expired", "duplicate", "rejected"];
const TOKEN_KEY = "pillowd-control-token";

// -- the cloud and its LEDs ---------------------------------------------------------

// The pillow's outline: the union of a flat-bottomed capsule and four bumps, in units
// where the cloud is about 2.5 wide. Seen from its middle it is star-shaped, so one
// radius per angle describes it.
const BUMPS = [[-0.78, 0.04, 0.38], [-0.27, -0.2, 0.5], [0.33, -0.26, 0.5], [0.82, 0.02, 0.37]];
const BASE = { x0: -0.92, x1: 0.92, y: 0.2, r: 0.32 };
const MIDDLE = [0, 0.1];

function insideCloud(x, y) {
  for (const [cx, cy, r] of BUMPS) if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) return true;
  const nx = Math.min(Math.max(x, BASE.x0), BASE.x1);
  return (x - nx) ** 2 + (y - BASE.y) ** 2 <= BASE.r * BASE.r;
}

function radiusAt(angle) {
  const dx = Math.cos(angle), dy = Math.sin(angle);
  let lo = 0, hi = 0.02;
  while (insideCloud(MIDDLE[0] + dx * hi, MIDDLE[1] + dy * hi) && hi < 3) { lo = hi; hi += 0.02; }
  for (let i = 0; i < 20; i++) {
    const mid = (lo + hi) / 2;
    if (insideCloud(MIDDLE[0] + dx * mid, MIDDLE[1] + dy * mid)) lo = mid; else hi = mid;
  }
  return lo;
}

// 720 points around the outline, starting bottom left and going clockwise (on screen).
const OUTLINE = Array.from({ length: 720 }, (_, i) => {
  const a = (3 * Math.PI) / 4 + (i / 720) * 2 * Math.PI;
  const r = radiusAt(a);
  return [MIDDLE[0] + Math.cos(a) * r, MIDDLE[1] + Math.sin(a) * r];
});

// LEDs at equal distances along the outline, tucked a little inside the edge.
function ledPoints(count) {
  const lengths = [0];
  for (let i = 1; i <= OUTLINE.length; i++) {
    const [x0, y0] = OUTLINE[i - 1], [x1, y1] = OUTLINE[i % OUTLINE.length];
    lengths.push(lengths[i - 1] + Math.hypot(x1 - x0, y1 - y0));
  }
  const total = lengths[lengths.length - 1];
  const points = [];
  let j = 0;
  for (let k = 0; k < count; k++) {
    const want = (k + 0.5) * total / count;
    while (lengths[j + 1] < want) j++;
    const [x, y] = OUTLINE[j];
    const pull = 0.13;  // toward the middle, so the glow stays on the fabric
    points.push([x + (MIDDLE[0] - x) * pull, y + (MIDDLE[1] - y) * pull]);
  }
  return points;
}

const canvas = $("leds");
const ctx = canvas.getContext("2d");
const view = { scale: 1, ox: 0, oy: 0, leds: [], frame: new Uint8Array(0) };

function layoutCanvas() {
  const ratio = window.devicePixelRatio || 1;
  const box = canvas.getBoundingClientRect();
  canvas.width = Math.max(1, Math.round(box.width * ratio));
  canvas.height = Math.max(1, Math.round(box.height * ratio));
  view.scale = Math.min(canvas.width / 2.7, canvas.height / 1.45);
  view.ox = canvas.width / 2;
  view.oy = canvas.height / 2 + 0.1 * view.scale;
  view.leds = [];
  draw();
}

const toCanvas = ([x, y]) => [view.ox + x * view.scale, view.oy + y * view.scale];

function draw() {
  const n = Math.floor(view.frame.length / 3);
  if (view.leds.length !== n) {
    view.leds = ledPoints(n).map(toCanvas).map(([x, y]) => [Math.round(x), Math.round(y)]);
  }
  const styles = getComputedStyle(document.body);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const path = new Path2D();
  OUTLINE.forEach((p, i) => { const [x, y] = toCanvas(p); i ? path.lineTo(x, y) : path.moveTo(x, y); });
  path.closePath();
  ctx.save();
  ctx.shadowColor = styles.getPropertyValue("--cloud-shadow");
  ctx.shadowBlur = 0.12 * view.scale;
  ctx.shadowOffsetY = 0.04 * view.scale;
  const fill = ctx.createLinearGradient(0, view.oy - view.scale * 0.8, 0, view.oy + view.scale * 0.55);
  fill.addColorStop(0, styles.getPropertyValue("--cloud-top"));
  fill.addColorStop(1, styles.getPropertyValue("--cloud-bottom"));
  ctx.fillStyle = fill;
  ctx.fill(path);
  ctx.restore();
  ctx.lineWidth = Math.max(1, 0.012 * view.scale);
  ctx.strokeStyle = styles.getPropertyValue("--cloud-edge");
  ctx.stroke(path);

  const bytes = view.frame;
  const core = Math.max(3, 0.045 * view.scale);
  // Glows first, then every core on top, so a neighbour's glow never tints a core.
  ctx.save();
  ctx.globalCompositeOperation = "lighter";
  view.leds.forEach(([x, y], i) => {
    const [r, g, b] = [bytes[3 * i], bytes[3 * i + 1], bytes[3 * i + 2]];
    if (r + g + b === 0) return;
    const glow = ctx.createRadialGradient(x, y, 0, x, y, core * 4);
    glow.addColorStop(0, `rgba(${r},${g},${b},0.55)`);
    glow.addColorStop(1, `rgba(${r},${g},${b},0)`);
    ctx.fillStyle = glow;
    ctx.fillRect(x - core * 4, y - core * 4, core * 8, core * 8);
  });
  ctx.restore();
  view.leds.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x, y, core, 0, 2 * Math.PI);
    ctx.fillStyle = `rgb(${bytes[3 * i]},${bytes[3 * i + 1]},${bytes[3 * i + 2]})`;
    ctx.fill();
    ctx.lineWidth = Math.max(1, core * 0.25);
    ctx.strokeStyle = styles.getPropertyValue("--led-ring");
    ctx.stroke();
  });
}

new ResizeObserver(layoutCanvas).observe(canvas);
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);

// What tests and curious people can read back: LED centres in canvas pixels, last frame.
window.pillowPage = {
  ledPositions: () => view.leds.map(([x, y]) => ({ x, y })),
  lastFrame: () => Array.from(view.frame),
};

// -- live state ---------------------------------------------------------------------

// The socket.io client is its own file (static/vendor/, fetched when pillowd is built):
// without it the page can never connect, so it says so instead of "connecting…".
if (typeof io === "undefined") {
  setBadge($("connection"), "no live updates", "bad");
  $("stale").textContent = "This page cannot show the pillow: its Socket.IO client " +
    "(static/vendor/socket.io.min.js) is missing from the pillow's install. " +
    "Reinstall pillowd (see its README, Installing).";
  $("stale").hidden = false;
  throw new Error("socket.io client script missing: static/vendor/socket.io.min.js");
}
// A private pillow ([web] private) shows nothing without the token: the page
// connects only once it has one, and sends it with the connect.
const privateMode = document.body.dataset.private === "on";
if (document.body.dataset.controls === "on") takeTokenFromAddress();
const socket = io("/pillow", {
  transports: ["websocket", "polling"],
  auth: (send) => send(privateMode ? { token: localStorage.getItem(TOKEN_KEY) || "" } : {}),
  autoConnect: !privateMode || !!localStorage.getItem(TOKEN_KEY),
});
let current = null;
let lastSeen = null;

function setBadge(el, text, kind) {
  el.textContent = text;
  el.className = "badge " + kind;
}

function markLive() {
  setBadge($("connection"), "live", "ok");
  document.body.classList.remove("stale");
  $("stale").hidden = true;
}

function markStale() {
  setBadge($("connection"), "reconnecting…", "warn");
  document.body.classList.add("stale");
  $("stale").hidden = false;
  showLastSeen();
}

function showLastSeen() {
  if (!lastSeen) { $("last-seen").textContent = "before the page loaded"; return; }
  const ago = Math.round((Date.now() - lastSeen) / 1000);
  $("last-seen").textContent = `${lastSeen.toLocaleTimeString()} (${ago} s ago)`;
}

// Events that came with the connection are handled before "connect" fires: only a
// page still without a fresh state says it is loading.
socket.on("connect", () => {
  if (!current || document.body.classList.contains("stale")) setBadge($("connection"), "connected, loading…", "warn");
});
socket.on("disconnect", markStale);
socket.on("connect_error", (err) => {
  // Refused by the pillow itself (a private one, and a wrong token): asking again
  // with the same token would only count as another wrong guess.
  if (privateMode && socket.active === false) {
    localStorage.removeItem(TOKEN_KEY);
    setBadge($("connection"), "locked: enter the control token", "bad");
    if (typeof showTokenState === "function") showTokenState();
    result(`The pillow refused: ${err.message}`, "bad");
    return;
  }
  if (current) markStale(); else setBadge($("connection"), "cannot reach the pillow, retrying…", "warn");
});
if (privateMode && !socket.active) setBadge($("connection"), "locked: enter the control token", "bad");
socket.io.on("reconnect_attempt", () => { if (current) markStale(); });

// Each frame is acknowledged: the pillow sends a page only a few frames ahead of
// what it has drawn, so a slow phone skips frames instead of piling them up.
socket.on("frame", (buf, ack) => {
  view.frame = new Uint8Array(buf);
  lastSeen = new Date();
  draw();
  if (typeof ack === "function") ack();
});

socket.on("state", (s) => {
  current = s;
  lastSeen = new Date();
  markLive();  // a fresh state arrives on every (re)connect: only then is it current
  render(s);
});

function text(id, value) { $(id).textContent = value; }

function render(s) {
  text("name", s.pillow);
  text("footer-name", s.pillow);
  document.title = `${s.pillow} · pillowd`;
  text("version", "pillowd " + s.version);
  text("scene", s.scene);
  text("effect", s.effect);
  const m = s.message;
  $("message").hidden = !(m && (m.from || m.text));
  text("sender", (m && m.from) || "someone");
  $("text").hidden = !(m && m.text);
  text("text", (m && m.text) || "");

  // A control token too short to accept: said here as in the log.
  const web = s.web || {};
  $("token-problem").hidden = !web.problem;
  text("token-problem", web.problem || "");

  // The LEDs or GPIO could not start, or the strip fails now: the pillow runs on
  // (queue, history, motors, this page) and says why here, as /healthz does.
  const hw = s.hardware || {ok: true};
  const leds = hw.leds || {ok: true};
  const since = leds.ok || !leds.since ? ""
    : ` (since ${new Date(leds.since).toLocaleTimeString()}; trying again)`;
  $("hardware-trouble").hidden = hw.ok;
  text("hardware-trouble", hw.ok ? "" : `The pillow's hardware is not working: ${hw.error}${since}`);

  const q = s.queue;
  setBadge($("queue-online"), q.online ? "online" : "offline", q.online ? "ok" : "bad");
  text("queue-backend", `${q.backend} queue`);
  $("queue-reason").hidden = q.online || !q.reason;
  text("queue-reason", q.online ? "" : (q.reason || ""));
  const counts = $("counts");
  counts.replaceChildren();
  for (const k of OUTCOMES) {
    const div = document.createElement("div");
    div.className = "count " + k;
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = q[k] ?? 0;
    div.append(dd, dt);
    counts.append(div);
  }

  text("quiet-state", s.quiet ? "quiet now" : "off");
  const brightness = s.leds.brightness;
  text("brightness-state", brightness > 0 ? `${Math.round(brightness * 100)} %` : "lights off");
  text("milliamps", `${Math.round(s.leds.milliamps)} mA for ${s.leds.count} LEDs`);
  const actuators = $("actuators");
  actuators.replaceChildren();
  const names = Object.keys(s.actuators || {});
  if (!names.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = "none fitted";
    actuators.append(li);
  }
  for (const name of names) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = name;
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = describeActuator(name, s.actuators[name]);
    li.append(label, value);
    actuators.append(li);
  }

  const list = $("recent");
  list.replaceChildren(...s.recent.map(outcomeItem));
  // Older pages go to their own list, which live updates leave alone.
  if (!olderStarted) {
    olderCursor = s.recent_before;
    $("older").hidden = !olderCursor;
  }

  renderHug(s.last_hug);
  renderSent(s.last_sent, s.outbox);
  renderWhileQuiet(s.while_quiet || []);
  renderControls(s);
  tick();
}

// The last partner's hug that played here, and whether it answered one of ours.
function renderHug(hug) {
  const el = $("last-hug");
  if (!hug) { el.textContent = "No hug from a partner yet."; return; }
  const when = document.createElement("time");
  when.dateTime = hug.at;
  when.textContent = new Date(hug.at).toLocaleString();
  const who = document.createElement("strong");
  who.textContent = hug.from || "a partner";
  el.replaceChildren(hug.reply ? "Hug back from " : "Hug from ", who, ", ", when);
  el.classList.toggle("reply", !!hug.reply);
  $("hug").textContent = "Hug back";
}

// 14:02, in the phone's own time zone, the same on every browser.
function clock(at) {
  const d = new Date(at);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// What became of the last hug sent: one line per partner, from its receipts and
// from the outbox (a partner's queue that refuses says why).
function renderSent(sent, outbox) {
  const list = $("last-sent");
  list.hidden = !sent;
  if (!sent) { list.replaceChildren(); return; }
  const queues = Object.fromEntries(Object.entries((outbox && outbox.partners) || {})
    .map(([queue, name]) => [name, queue]));
  const away = (outbox && outbox.away) || {};
  const names = Object.keys(sent.partners || {});
  list.replaceChildren(...names.map((name) => {
    const p = sent.partners[name];
    const steps = [`sent ${clock(sent.at)}`];
    if (p.expired) steps.push("not delivered (expired)");
    else if (p.delivered || p.hugged_back) {
      // A hug back says it was delivered, even before (or without) its receipt.
      if (p.delivered) steps.push(`delivered ${clock(p.delivered)}`);
      if (p.hugged_back) steps.push(`hugged back ${clock(p.hugged_back)}`);
      if (p.quiet) steps.push(`${name}'s pillow is in quiet hours`);
    } else if (away[queues[name]]) steps.push(`not delivered yet: ${name}'s queue ${away[queues[name]]}`);
    const li = document.createElement("li");
    li.textContent = (names.length > 1 ? `${name}: ` : "") + steps.join(" · ");
    li.className = p.expired || (!p.delivered && !p.hugged_back && away[queues[name]]) ? "bad" : "";
    return li;
  }));
}

// What came while the pillow was quiet, until someone has seen it.
function renderWhileQuiet(items) {
  $("while-quiet").hidden = !items.length;
  const who = items.map((i) => `${i.from || "someone"}, ${clock(i.at)}`).join("; ");
  text("while-quiet-list", items.length ? `While you slept: ${who}` : "");
}

function describeActuator(name, value) {
  if (name === "servo") return value === null ? "limp" : `${Math.round(value)}°`;
  if (name === "warmer") return value ? "warming" : "off";
  if (typeof value === "number") return value === 0 ? "still" : `${Math.round(value * 100)} %`;
  if (typeof value === "boolean") return value ? "on" : "off";
  if (value === null || value === undefined) return "–";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function outcomeItem(r) {
  const li = document.createElement("li");
  li.className = "outcome " + r.outcome;
  const pill = document.createElement("span");
  pill.className = "pill " + r.outcome;
  pill.textContent = r.outcome;
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = (r.scene || "a message") + (r.from ? ` from ${r.from}` : "") +
    (r.reply ? " · hug back" : "");
  const when = document.createElement("time");
  when.dateTime = r.at;
  when.textContent = r.at ? new Date(r.at).toLocaleTimeString() : "";
  li.append(pill, what, when);
  if (r.reason) {
    const reason = document.createElement("p");
    reason.className = "reason";
    reason.textContent = r.reason;
    li.append(reason);
  }
  return li;
}

function tick() {
  if (document.body.classList.contains("stale")) { showLastSeen(); return; }
  if (!current) return;
  if (!current.until) {
    text("until", current.scene === "idle" || !current.message ? "resting" : "until the next message");
    return;
  }
  const left = Math.max(0, Math.ceil((Date.parse(current.until) - Date.now()) / 1000));
  text("until", `back to idle in ${left} s`);
}
setInterval(tick, 1000);

// -- older history ------------------------------------------------------------------

let olderCursor = null;
let olderStarted = false;
$("older").addEventListener("click", async () => {
  if (!olderCursor) return;
  olderStarted = true;
  const token = localStorage.getItem(TOKEN_KEY);
  const reply = await fetch(`/api/history?limit=50&before=${encodeURIComponent(olderCursor)}`,
    { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!reply.ok) return;
  const page = await reply.json();
  $("older-list").append(...page.items.map(outcomeItem));
  olderCursor = page.next;
  $("older").hidden = !page.next;
});

// -- controls -----------------------------------------------------------------------

const controlsOn = document.body.dataset.controls === "on";

function takeTokenFromAddress() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete("token");
  history.replaceState(null, "", url.pathname + url.search + url.hash);  // out of sight, out of history
}

function showTokenState() {
  const has = !!localStorage.getItem(TOKEN_KEY);
  $("token-form").hidden = has;
  $("control-panel").hidden = !has;
  $("hug").hidden = !has;  // a hug is a control: it needs the token too
  $("seen").hidden = !has;
}

function result(message, kind, where) {
  const el = $(where || "control-result");
  el.textContent = message;
  el.className = "result " + (kind || "");
}

async function control(path, body, done, where) {
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) { showTokenState(); return; }
  let reply;
  try {
    reply = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
      body: JSON.stringify(body || {}),
    });
  } catch (err) {
    result("The pillow did not answer; try again when it is back.", "bad", where);
    return;
  }
  const data = await reply.json().catch(() => ({}));
  if (reply.status === 401) {
    localStorage.removeItem(TOKEN_KEY);
    showTokenState();
    result("The pillow refused that token. Enter it again.", "bad");
    return;
  }
  if (!reply.ok) { result(data.error || `refused (${reply.status})`, "bad", where); return; }
  result(done, "ok", where);
}

function renderControls(s) {
  if (!controlsOn) return;
  const select = $("scene-select");
  const scenes = (s.scenes || []).filter((n) => n !== "idle");
  const have = Array.from(select.options, (o) => o.value);
  if (have.join() !== scenes.join()) {
    const keep = select.value;
    select.replaceChildren(...scenes.map((n) => { const o = document.createElement("option"); o.value = n; o.textContent = n; return o; }));
    if (scenes.includes(keep)) select.value = keep;
  }
  if (document.activeElement !== $("brightness")) {
    $("brightness").value = Math.round(s.leds.brightness * 100);
    text("brightness-value", `${Math.round(s.leds.brightness * 100)} %`);
  }
  $("quiet").setAttribute("aria-pressed", String(!!s.quiet));
  text("quiet", s.quiet ? "End quiet" : "Quiet now");
}

if (controlsOn) {
  showTokenState();
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    localStorage.setItem(TOKEN_KEY, token);
    $("token").value = "";
    showTokenState();
    result("Unlocked. The pillow checks the token on every control.", "ok");
    if (privateMode && !socket.connected) socket.connect();
  });
  $("forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    showTokenState();
    result("Token forgotten: this page is read-only here now.", "");
  });
  $("scene-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const scene = $("scene-select").value;
    control("/api/scene", { scene, from: "status page" }, `Playing ${scene}.`);
  });
  $("brightness").addEventListener("input", () => text("brightness-value", `${$("brightness").value} %`));
  $("brightness").addEventListener("change", () => {
    const value = Number($("brightness").value) / 100;
    control("/api/brightness", { brightness: value }, `Brightness set to ${Math.round(value * 100)} %.`);
  });
  $("off").addEventListener("click", () => control("/api/off", {}, "Lights off."));
  $("hug").addEventListener("click", () =>
    control("/api/hug", {}, "Hug sent: it plays here and goes to your partners.", "hug-result"));
  $("seen").addEventListener("click", () =>
    control("/api/seen", {}, "Marked as seen.", "hug-result"));
  $("quiet").addEventListener("click", () => {
    const quiet = !(current && current.quiet);
    control("/api/quiet", { quiet }, quiet ? "Quiet now." : "Quiet ended.");
  });
}
