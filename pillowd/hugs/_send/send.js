// The friend's send page: one POST of Azure's message XML per hug, to the add-only
// queue URL in the link's #fragment; the answer is told plainly.
"use strict";

const STORE = "pillowd-invite";
const NAME = "pillowd-sender-name";  // the name this friend last sent under
const MAX_TEXT = 280;  // the pillow's limit on a message's text (pillowd/messages.py)
// The characters the pillow refuses in a note (messages.py's _TEXT_UNSAFE; the line
// breaks it allows cannot be typed in one line): controls, bidi marks, overrides and
// isolates, separators, and a lone half of a surrogate pair.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]|\p{Cs}/gu;

// The invite: {from, pillows: [{name, url, until}]}. The link carries it in the
// fragment, which no request sends. It is kept on the phone so that the page opened
// without it (from the home screen, offline) still knows where to send, but only
// until it expires: local storage is shared by every page of the static website
// ($web), so each pillow's add-only URL is dropped once its `until` has passed (or
// the queue said it expired or was revoked), and one without an `until` is never kept.
function readInvite() {
  const params = new URLSearchParams(location.hash.slice(1));
  const names = params.getAll("to"), urls = params.getAll("q"), until = params.getAll("until");
  if (names.length && names.length === urls.length) {
    const invite = {
      from: params.get("from") || "",
      pillows: names.map((name, i) => ({name, url: urls[i], until: until[i] || ""}))
        .filter((pillow) => acceptable(pillow.url)),
    };
    if (!invite.pillows.length) return null;
    keep(invite);
    return invite;  // all of it: a pillow past its date still says so when tapped
  }
  let kept = null;
  try { kept = JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { /* unusable */ }
  // What an earlier page kept for ever, or kept past its time, goes now.
  return keep(kept && Array.isArray(kept.pillows) ? kept : {from: "", pillows: []});
}

// Keeps on the phone the pillows of *invite* that have not expired, and nothing
// once none is left; returns the invite with those alone, or null.
function keep(invite) {
  const live = invite.pillows.filter((p) => p && typeof p.url === "string"
    && typeof p.name === "string" && acceptable(p.url) && unexpired(p));
  const from = typeof invite.from === "string" ? invite.from : "";
  try {
    if (live.length) {
      localStorage.setItem(STORE, JSON.stringify({from, pillows: live}));
    } else {
      localStorage.removeItem(STORE);
    }
  } catch (e) { /* private mode: nothing kept */ }
  return live.length ? {from, pillows: live} : null;
}

function unexpired(pillow) {
  const until = validUntil(pillow);
  return until !== null && Date.now() < until.getTime();
}

// Forgets one pillow's URL on the phone: the queue refused it for good.
function forget(pillow) {
  let kept = null;
  try { kept = JSON.parse(localStorage.getItem(STORE) || "null"); } catch (e) { /* unusable */ }
  const pillows = kept && Array.isArray(kept.pillows) ? kept.pillows : [];
  keep({from: kept && kept.from, pillows: pillows.filter((p) => p && p.url !== pillow.url)});
}

// The account's queue endpoint, written into the page by `pillowd invite --page`
// (and into its Content-Security-Policy): a link's q must be one of its queues'
// /messages, whatever site the page is served from, so a link made by someone else
// cannot borrow this page to send the friend's words elsewhere.
function queueEndpoint() {
  const meta = document.querySelector('meta[name="pillowd-queue-endpoint"]');
  try {
    const endpoint = new URL(meta ? meta.content : "");
    return /^https?:$/.test(endpoint.protocol) && endpoint.pathname.endsWith("/") ? endpoint : null;
  } catch (e) {
    return null;  // not published by invite --page: it sends nowhere
  }
}

function acceptable(url) {
  const endpoint = queueEndpoint();
  let target;
  try { target = new URL(url); } catch (e) { return false; }
  if (!endpoint || target.origin !== endpoint.origin || target.username || target.password
      || !target.pathname.startsWith(endpoint.pathname)) return false;
  return /^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}\/messages$/
    .test(target.pathname.slice(endpoint.pathname.length));
}

function titled(name) {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

function messageId() {
  if (crypto.randomUUID) return crypto.randomUUID();  // secure contexts only
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// Base64 of the UTF-8 JSON: the pillow reads plain or base64 bodies alike, and
// base64 needs no XML escaping whatever the friend types.
function base64(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function clockTime(date) {
  return date.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
}

function dayAndTime(date) {
  return date.toLocaleString([], {day: "numeric", month: "short", year: "numeric",
                                  hour: "2-digit", minute: "2-digit"});
}

function validUntil(pillow) {
  const when = pillow.until ? new Date(pillow.until) : null;
  return when && !isNaN(when) ? when : null;
}

function show(state, text) {
  const status = document.getElementById("status");
  status.dataset.state = state;
  status.textContent = text;
}

// Azure's answer, in words. A refused signature (403 AuthenticationFailed) is all
// Azure and Azurite say for an expired invite and a revoked one alike: the detail
// Azure may add, then the expiry the link carries, tell them apart.
function explain(pillow, status, body) {
  const who = titled(pillow.name);
  if (status === 201) {
    return ["sent", `Sent at ${clockTime(new Date())}: ${who}'s pillow plays it as soon as it next looks.`];
  }
  const code = (/<Code>([^<]*)<\/Code>/.exec(body) || [])[1] || "";
  const detail = (/<AuthenticationErrorDetail>([^<]*)</.exec(body) || [])[1] || "";
  if (status === 403 && code === "AuthenticationFailed") {
    const until = validUntil(pillow);
    if (/expir|time frame/i.test(detail) || (until && Date.now() >= until.getTime())) {
      const when = until ? ` on ${dayAndTime(until)}` : "";
      return ["expired", `Not sent: this link expired${when}. Ask for a new one.`];
    }
    return ["revoked", `Not sent: this link was revoked. It no longer sends hugs to ${who}.`];
  }
  if (status === 404) {
    return ["revoked", `Not sent: ${who}'s queue is gone. This link no longer works.`];
  }
  const answer = [status, code].filter(Boolean).join(" ");
  return ["failed", `Not sent: ${who}'s queue answered ${answer}. Try again later.`];
}

// Press and hold: the hug carries how long it was held (0.1 to 30 s; still held at
// 30 s, it goes then, once), and the pillow plays a held hug longer. A ring fills
// while it is held. A key press (Enter, Space) is a tap: no hold.
const HOLD_MIN = 0.1, HOLD_MAX = 30;
function holdable(button, release) {
  let downAt = null, full = null;
  const done = () => { downAt = null; clearTimeout(full); button.classList.remove("holding"); };
  button.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 || button.disabled) return;
    downAt = performance.now();
    button.classList.add("holding");
    button.setPointerCapture(e.pointerId);
    full = setTimeout(() => { if (downAt !== null) { done(); release(HOLD_MAX); } }, HOLD_MAX * 1000);
  });
  const end = (send) => () => {
    if (downAt === null) return;
    const held = (performance.now() - downAt) / 1000;
    done();
    if (send) release(Math.round(Math.min(HOLD_MAX, Math.max(HOLD_MIN, held)) * 100) / 100);
  };
  button.addEventListener("pointerup", end(true));
  button.addEventListener("pointercancel", end(false));
  button.addEventListener("click", (e) => { if (e.detail === 0) release(null); });
  button.addEventListener("contextmenu", (e) => e.preventDefault());  // a long touch
}

async function send(invite, pillow, button, hold) {
  const form = document.getElementById("hug");
  const message = {scene: "hug", id: messageId(), sent_at: new Date().toISOString()};
  if (hold) message.hold = hold;
  // The name the friend gave (prefilled from the invite, editable), as the pillow
  // allows it: no control or format characters.
  const from = form.elements.from.value.replace(UNSAFE, " ").replace(/\s+/g, " ").trim();
  if (from) message.from = Array.from(from).slice(0, 64).join("");
  try { localStorage.setItem(NAME, from); } catch (e) { /* private mode */ }
  // What the pillow refuses in a note would get the whole hug rejected: a space instead.
  const text = form.elements.text.value.replace(UNSAFE, " ").trim();
  // Cut by characters, as the pillow counts: never half of an emoji's pair.
  if (text) message.text = Array.from(text).slice(0, MAX_TEXT).join("");
  if (form.elements.colour.value) message.color = form.elements.colour.value;
  const xml = `<QueueMessage><MessageText>${base64(JSON.stringify(message))}</MessageText></QueueMessage>`;
  button.disabled = true;
  show("sending", "Sending…");
  try {
    let response;
    try {
      response = await fetch(pillow.url, {
        method: "POST", body: xml, headers: {"Content-Type": "application/xml"},
        cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
      });
    } catch (e) {
      // No answer at all: offline, the host unknown, a preflight the queue refused,
      // or a refusal the browser may not read. Past the link's expiry, that is the
      // one thing known for sure.
      const until = validUntil(pillow);
      if (until && Date.now() >= until.getTime()) {
        show("expired", `Not sent: this link expired on ${dayAndTime(until)}. Ask for a new one.`);
      } else {
        show("unreachable", `Could not reach ${titled(pillow.name)}'s pillow: check the connection and try again.`);
      }
      return;
    }
    const body = response.status === 201 ? "" : await response.text().catch(() => "");
    const [state, words] = explain(pillow, response.status, body);
    if (state === "expired" || state === "revoked") forget(pillow);
    show(state, words);
  } finally {
    button.disabled = false;
  }
}

function start() {
  const invite = readInvite();
  if (!invite) {
    document.getElementById("no-invite").hidden = false;
    return;
  }
  const names = invite.pillows.map((p) => titled(p.name));
  document.getElementById("title").textContent = `A hug for ${names.join(" or ")}`;
  let kept = null;
  try { kept = localStorage.getItem(NAME); } catch (e) { /* private mode */ }
  document.getElementById("from").value = kept !== null ? kept : titled(invite.from || "");
  const buttons = document.getElementById("buttons");
  for (const pillow of invite.pillows) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "send";
    button.textContent = `Send ${titled(pillow.name)} a hug`;
    holdable(button, (hold) => send(invite, pillow, button, hold));
    buttons.append(button);
  }
  const ends = invite.pillows.map(validUntil).filter(Boolean);
  if (ends.length) {
    const last = new Date(Math.max(...ends.map((d) => d.getTime())));
    document.getElementById("until").textContent = `This link works until ${dayAndTime(last)}.`;
  }
  document.getElementById("hug").hidden = false;
  document.getElementById("hug").addEventListener("submit", (e) => e.preventDefault());
}

// Saved to the home screen, the page opens with no network: the service worker
// keeps its files. It needs a secure context (https, or localhost).
if ("serviceWorker" in navigator && window.isSecureContext) {
  navigator.serviceWorker.register("sw.js").catch(() => { /* works online anyway */ });
}
start();
