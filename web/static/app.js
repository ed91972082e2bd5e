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
const view = { scale: 1, ox: 0, oy: 0, leds: [], frame: new Uint8Array(0), gamma: 2.2 };

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

  const core = Math.max(3, 0.045 * view.scale);
  const seen = view.leds.map((_, i) => asSeen(view.frame, i));
  // Glows first, then every core on top, so a neighbour's glow never tints a core.
  ctx.save();
  // Light adds up on a dark cloud; on a white one adding changes nothing (it is
  // already full), so the glow is painted over it instead.
  ctx.globalCompositeOperation = matchMedia("(prefers-color-scheme: dark)").matches
    ? "lighter" : "source-over";
  view.leds.forEach(([x, y], i) => {
    const led = seen[i];
    if (!led) return;
    const [r, g, b] = led.rgb;
    const alpha = (0.3 + 0.45 * led.level).toFixed(3);  // a brighter LED glows wider
    const glow = ctx.createRadialGradient(x, y, 0, x, y, core * 4);
    glow.addColorStop(0, `rgba(${r},${g},${b},${alpha})`);
    glow.addColorStop(1, `rgba(${r},${g},${b},0)`);
    ctx.fillStyle = glow;
    ctx.fillRect(x - core * 4, y - core * 4, core * 8, core * 8);
  });
  ctx.restore();
  view.leds.forEach(([x, y], i) => {
    ctx.beginPath();
    ctx.arc(x, y, core, 0, 2 * Math.PI);
    const led = seen[i];
    ctx.fillStyle = led ? `rgb(${led.rgb.join(",")})` : "rgb(0,0,0)";  // black: off
    ctx.fill();
    ctx.lineWidth = Math.max(1, core * 0.25);
    ctx.strokeStyle = styles.getPropertyValue("--led-ring");
    ctx.stroke();
  });
}

// An LED as the eye sees it on the pillow. The frame holds the drive values, after
// brightness, gamma and the power limit: undoing the gamma gives the colour that
// plays at the level it plays (a red hug at brightness 0.6 is 60 % red, not the
// 33 % duty it is driven at). A lit LED is then drawn at least at SEEN_FLOOR of full,
// with its hue kept, since a glowing bead in a room reads brighter than the same
// value on a screen: quiet hours and idle are dim, not black. Black only when off.
const SEEN_FLOOR = 0.6;

function asSeen(bytes, i) {
  const gamma = view.gamma;
  const drive = [bytes[3 * i], bytes[3 * i + 1], bytes[3 * i + 2]];
  const linear = drive.map((v) => (v > 0 ? 255 * (v / 255) ** (1 / gamma) : 0));
  const top = Math.max(...linear);
  if (!(top > 0)) return null;
  const level = top / 255;
  const shown = SEEN_FLOOR + (1 - SEEN_FLOOR) * level;
  return { rgb: linear.map((v) => Math.round((v / top) * shown * 255)), level };
}

// The figures beside the cloud, from the frame itself: live while something plays.
function showFigures() {
  const bytes = view.frame, n = Math.floor(bytes.length / 3);
  if (!n || !current) return;
  const leds = current.leds || {};
  let duty = 0, top = 0;
  for (let i = 0; i < n; i++) {
    duty += bytes[3 * i] + bytes[3 * i + 1] + bytes[3 * i + 2];
    const led = asSeen(bytes, i);
    if (led && led.level > top) top = led.level;
  }
  const perLed = leds.milliamps_per_led, idle = leds.idle_milliamps_per_led;
  // The output stage's estimate (pillowd/leds/light.py): idle draw, plus each channel's
  // share of a full LED in proportion to its duty.
  const milliamps = perLed === undefined ? leds.milliamps
    : n * (idle || 0) + (perLed / 3) * duty / 255;
  text("milliamps", `${Math.round(milliamps)} mA for ${n} LEDs`);
  text("light-level", top > 0 ? `${Math.round(top * 100)} %` : "dark");
}

new ResizeObserver(layoutCanvas).observe(canvas);
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);

// What tests and curious people can read back: LED centres in canvas pixels, last frame.
window.pillowPage = {
  ledPositions: () => view.leds.map(([x, y]) => ({ x, y })),
  lastFrame: () => Array.from(view.frame),
  // What each LED is drawn as: [r, g, b], or null when it is off.
  seenColours: () => view.leds.map((_, i) => { const led = asSeen(view.frame, i); return led && led.rgb; }),
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
  showFigures();
  if (typeof ack === "function") ack();
});

socket.on("state", (s) => {
  current = s;
  lastSeen = new Date();
  markLive();  // a fresh state arrives on every (re)connect: only then is it current
  render(s);
});

function text(id, value) { $(id).textContent = value; }

// -- times: one format everywhere ---------------------------------------------------

// "2 min ago" on the page, the exact time in the browser's own locale on hover.
function relative(at) {
  const seconds = Math.round((Date.now() - Date.parse(at)) / 1000);
  if (!isFinite(seconds)) return "";
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 24) return `${hours} h ago`;
  const days = Math.round(hours / 24);
  return days === 1 ? "yesterday" : `${days} days ago`;
}

function timeElement(at) {
  const when = document.createElement("time");
  when.dateTime = at || "";
  when.className = "ago";
  if (at) {
    when.textContent = relative(at);
    when.title = new Date(at).toLocaleString();
  }
  return when;
}

// Every "2 min ago" on the page, brought up to date (once a second, with tick()).
function refreshTimes() {
  document.querySelectorAll("time.ago").forEach((el) => {
    if (el.dateTime) el.textContent = relative(el.dateTime);
  });
}

// 14:02, in the phone's own time zone, the same on every browser: for a tick on a
// hug ("delivered ✓ 14:02"), with the exact time on hover.
function clock(at) {
  const d = new Date(at);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

function tickElement(words, at) {
  const span = document.createElement("span");
  span.className = "tick";
  const when = document.createElement("time");
  when.dateTime = at;
  when.title = new Date(at).toLocaleString();
  when.textContent = clock(at);
  span.append(`${words} ✓ `, when);
  return span;
}

// -- the state ----------------------------------------------------------------------

function render(s) {
  text("name", s.pillow);
  text("footer-name", s.pillow);
  document.title = `${s.pillow} · pillowd`;
  text("version", "pillowd " + s.version);
  text("scene", s.scene === "off" ? "lights off" : s.scene);
  text("effect", s.scene === "off" ? "" : s.effect);
  $("effect").hidden = s.scene === "off";
  const m = s.message;
  $("message").hidden = !(m && (m.from || m.text));
  text("sender", (m && m.from) || "someone");
  $("text").hidden = !(m && m.text);
  text("text", (m && m.text) || "");
  if (s.leds && s.leds.gamma) view.gamma = s.leds.gamma;

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
    // A partner's receipt is kept as applied, but it is no message that played.
    dd.textContent = k === "applied" ? (q.applied ?? 0) - (q.receipts ?? 0) : (q[k] ?? 0);
    div.append(dd, dt);
    counts.append(div);
  }

  text("lights-fact", s.lights === "off" ? "off until the next message" : "on");
  text("quiet-state", s.quiet ? "quiet now" : "off");
  const brightness = s.leds.brightness;
  text("brightness-state", brightness > 0 ? `${Math.round(brightness * 100)} %` : "0 %");
  showFigures();
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

  renderHistory($("recent"), s.recent);
  $("recent-empty").hidden = s.recent.length > 0;
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
  el.classList.toggle("reply", !!(hug && hug.reply));
  if (!hug) { el.textContent = "No hug from a partner yet."; return; }
  const who = document.createElement("strong");
  who.textContent = hug.from || "a partner";
  const parts = [hug.reply ? "Hug back from " : "Hug from ", who, ", ", timeElement(hug.at)];
  // Held, how hard, and in the partner's colour (SPEC: last_hug's hold, strength, color).
  if (hug.hold) parts.push(`, held ${hug.hold < 10 ? hug.hold.toFixed(1) : Math.round(hug.hold)} s`);
  if (hug.strength && hug.strength < 1) parts.push(`, ${Math.round(hug.strength * 100)} % strength`);
  if (hug.color) {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.title = hug.color;
    swatch.style.backgroundColor = hug.color;  // CSSOM, not a style attribute: allowed
    parts.unshift(swatch);
  }
  el.replaceChildren(...parts);
  el.dataset.color = hug.color || "";
}

// What the hug button does now: answer a partner's hug within the reply window,
// else send one, else (no partner) play it here.
function hugAction(s) {
  const partners = Object.keys((s.outbox && s.outbox.partners) || {}).length;
  if (!partners) return "here";
  const hug = s.last_hug;
  const window = ((s.web || {}).reply_window_seconds ?? 600) * 1000;
  if (hug && hug.at && Date.now() - Date.parse(hug.at) <= window) return "back";
  return "send";
}
const HUG_LABELS = { back: "Hug back", send: "Send a hug", here: "Play hug here" };
const HUG_DONE = {
  back: "Hug back sent: it plays here and goes to your partner.",
  send: "Hug sent: it plays here and goes to your partners.",
  here: "Playing the hug here (this pillow has no partner to send it to).",
};

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
    const li = document.createElement("li");
    const parts = [(names.length > 1 ? `To ${name}: sent ` : "Sent "), timeElement(sent.at)];
    const more = (node) => parts.push(" · ", node);
    if (p.expired) more("not delivered (expired)");
    else if (p.delivered || p.hugged_back) {
      // A hug back says it was delivered, even before (or without) its receipt.
      if (p.delivered) more(tickElement("delivered", p.delivered));
      if (p.hugged_back) more(tickElement("hugged back", p.hugged_back));
      if (p.quiet) more(`${name}'s pillow is in quiet hours`);
    } else if (away[queues[name]]) more(`not delivered yet: ${name}'s queue ${away[queues[name]]}`);
    li.append(...parts);
    li.className = p.expired || (!p.delivered && !p.hugged_back && away[queues[name]]) ? "bad" : "";
    return li;
  }));
}

// What came while the pillow was quiet, until someone has seen it.
function renderWhileQuiet(items) {
  $("while-quiet").hidden = !items.length;
  const el = $("while-quiet-list");
  if (!items.length) { el.replaceChildren(); return; }
  const parts = ["While you slept: "];
  items.forEach((i, k) => {
    if (k) parts.push("; ");
    parts.push(`${i.from || "someone"}, `, timeElement(i.at));
  });
  el.replaceChildren(...parts);
}

function describeActuator(name, value) {
  if (name === "servo") return value === null ? "limp" : `${Math.round(value)}°`;
  if (name === "warmer") return value ? "warming" : "off";
  if (typeof value === "number") return value === 0 ? "still" : `${Math.round(value * 100)} %`;
  if (typeof value === "boolean") return value ? "on" : "off";
  if (value === null || value === undefined) return "–";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// -- the history: a conversation ----------------------------------------------------

// The receipts in the lists shown, by the hug they answer: a receipt is shown on
// that hug as "delivered ✓ 14:02", never as a row of its own.
let receipts = new Map();

function renderHistory(list, items) {
  receipts = new Map();
  for (const item of [...((current && current.recent) || []), ...olderItems]) {
    if (item.event !== "receipt" || !item.of) continue;
    const had = receipts.get(item.of) || [];
    if (!had.some((r) => r.id === item.id)) receipts.set(item.of, [...had, item]);
  }
  list.replaceChildren(...items.filter((i) => i.event !== "receipt").map(outcomeItem));
}

function outcomeItem(r) {
  const li = document.createElement("li");
  li.className = "outcome " + r.outcome;
  li.dataset.id = r.id;
  const head = document.createElement("p");
  head.className = "head";
  const who = document.createElement("strong");
  who.className = "who";
  const own = r.scene && current && current.web && r.scene === current.web.hug_scene && !r.from;
  who.textContent = r.from || (own ? "You" : "someone");
  const what = document.createElement("span");
  what.className = "what";
  what.textContent = own ? "sent a hug" : (r.scene || "a message") + (r.reply ? " · hug back" : "");
  head.append(who, " ", what);
  if (r.outcome !== "applied") {
    const pill = document.createElement("span");
    pill.className = "pill " + r.outcome;
    pill.textContent = r.outcome;
    head.append(" ", pill);
  }
  li.append(head, timeElement(r.at));
  if (r.text) {
    const note = document.createElement("p");
    note.className = "note";  // white-space: pre-line keeps the note's line breaks
    note.textContent = r.text;
    li.append(note);
  }
  const ticks = receipts.get(r.id) || [];
  if (ticks.length) {
    const p = document.createElement("p");
    p.className = "delivered";
    ticks.forEach((t, k) => {
      if (k) p.append(" · ");
      p.append(tickElement(ticks.length > 1 && t.from ? `delivered to ${t.from}` : "delivered", t.at));
    });
    li.append(p);
  }
  if (r.reason) {
    const reason = document.createElement("p");
    reason.className = "reason";
    reason.textContent = r.reason;
    li.append(reason);
  }
  return li;
}

function tick() {
  refreshTimes();
  if (document.body.classList.contains("stale")) { showLastSeen(); return; }
  if (!current) return;
  if (controlsOn) $("hug").textContent = HUG_LABELS[hugAction(current)];
  if (current.scene === "off") { text("until", "until the next message, or lights on"); return; }
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
const olderItems = [];
$("older").addEventListener("click", async () => {
  if (!olderCursor) return;
  olderStarted = true;
  const token = localStorage.getItem(TOKEN_KEY);
  const reply = await fetch(`/api/history?limit=50&before=${encodeURIComponent(olderCursor)}`,
    { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  if (!reply.ok) return;
  const page = await reply.json();
  olderItems.push(...page.items);
  renderHistory($("older-list"), olderItems);
  if (current) renderHistory($("recent"), current.recent);  // a tick for a newer row
  olderCursor = page.next;
  $("older").hidden = !page.next;
});

// -- controls -----------------------------------------------------------------------

const controlsOn = document.body.dataset.controls === "on";
const tokenShort = document.body.dataset.controls === "short";

function takeTokenFromAddress() {
  const url = new URL(location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  if (token) localStorage.setItem(TOKEN_KEY, token);
  url.searchParams.delete("token");
  history.replaceState(null, "", url.pathname + url.search + url.hash);  // out of sight, out of history
}

function showTokenState() {
  const has = controlsOn && !!localStorage.getItem(TOKEN_KEY);
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

// A token, checked at once by a request that changes nothing (POST /api/token).
// Returns true when it works; says why not otherwise.
async function checkToken(token) {
  let reply;
  try {
    reply = await fetch("/api/token", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  } catch (err) {
    result("The pillow did not answer; the token could not be checked.", "bad");
    return null;  // unknown: kept, checked again on the first control
  }
  const data = await reply.json().catch(() => ({}));
  if (reply.ok) return true;
  if (reply.status === 403 && data.fix) {
    // Its holder is told why controls are off, and how to mend it.
    text("token-problem-text", `Controls are off: ${data.error}.`);
    text("token-fix", data.fix);
    $("token-fix").hidden = false;
    $("token-problem").hidden = false;
    result("That is this pillow's token, but it is too short to be accepted (see above).", "bad");
    return false;
  }
  if (reply.status === 429) result("Too many wrong tokens from here: wait a minute, then try again.", "bad");
  else if (reply.status === 401) result("That token does not work on this pillow. Check it and paste it again.", "bad");
  else result(data.error || `The pillow refused the token (${reply.status}).`, "bad");
  return false;
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
  const lit = s.lights !== "off";
  $("lights").setAttribute("aria-checked", String(lit));
  text("lights-state", lit ? "on" : "off");
  $("quiet").setAttribute("aria-pressed", String(!!s.quiet));
  text("quiet", s.quiet ? "End quiet" : "Quiet now");
  $("hug").textContent = HUG_LABELS[hugAction(s)];
}

// The hug button, press-and-hold: a pointer press is timed from down to up and the
// hug carries how long it was held (0.1 to 30 s: still held at 30 s, it goes then);
// a ring fills while it is held. A key press is a tap (no hold).
const HOLD_MIN = 0.1, HOLD_MAX = 30;
function sendHug(heldSeconds) {
  const action = current ? hugAction(current) : "send";
  const body = heldSeconds === null ? {} :
    { hold: Math.round(Math.min(HOLD_MAX, Math.max(HOLD_MIN, heldSeconds)) * 100) / 100 };
  control("/api/hug", body, HUG_DONE[action], "hug-result");
}

function holdable(button, release) {
  let downAt = null, full = null;
  const done = () => {
    downAt = null;
    clearTimeout(full);
    button.classList.remove("holding");
  };
  button.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    downAt = performance.now();
    button.classList.add("holding");
    button.setPointerCapture(e.pointerId);
    // Held this long: it goes now, once; the release then sends nothing more.
    full = setTimeout(() => { if (downAt !== null) { done(); release(HOLD_MAX); } }, HOLD_MAX * 1000);
  });
  const end = (send) => (e) => {
    if (downAt === null) return;
    const held = (performance.now() - downAt) / 1000;
    done();
    if (send) release(held);
  };
  button.addEventListener("pointerup", end(true));
  button.addEventListener("pointercancel", end(false));
  // Enter or Space (detail 0): no pointer was involved.
  button.addEventListener("click", (e) => { if (e.detail === 0) release(null); });
}

if (tokenShort) {
  // Controls are off (a token too short): the form is here so that whoever holds
  // that token can learn why, and nobody else.
  $("token-form").hidden = false;
  $("token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    $("token").value = "";
    if (token) await checkToken(token);
  });
}

if (controlsOn) {
  showTokenState();
  const kept = localStorage.getItem(TOKEN_KEY);
  if (kept) {
    checkToken(kept).then((works) => {
      if (works === false) { localStorage.removeItem(TOKEN_KEY); showTokenState(); }
    });
  }
  $("token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const token = $("token").value.trim();
    if (!token) return;
    $("token").value = "";
    const works = await checkToken(token);
    if (works === false) return;
    localStorage.setItem(TOKEN_KEY, token);
    showTokenState();
    if (works) result("Unlocked: this token works.", "ok");
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
  $("lights").addEventListener("click", () => {
    const lit = $("lights").getAttribute("aria-checked") === "true";
    control(lit ? "/api/off" : "/api/on", {},
      lit ? "Lights off: the next message plays as usual." : "Lights on.");
  });
  holdable($("hug"), sendHug);
  $("seen").addEventListener("click", () =>
    control("/api/seen", {}, "Marked as seen.", "hug-result"));
  $("quiet").addEventListener("click", () => {
    const quiet = !(current && current.quiet);
    control("/api/quiet", { quiet }, quiet ? "Quiet now." : "Quiet ended.");
  });
}
