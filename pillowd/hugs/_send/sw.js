// The send page's service worker: its own files from the cache first, so the page
// opens offline; each is fetched again in the background to pick up a new version.
// Only this origin's GETs are handled: a hug's POST to the queue never passes here.
"use strict";

// A new name with each version of the page: the old files (and their policy) go.
const CACHE = "pillowd-hug-3";
const FILES = ["index.html", "send.js", "send.css", "icon.svg"];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES))
    .then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET" || new URL(request.url).origin !== location.origin) return;
  event.respondWith(caches.open(CACHE).then(async (cache) => {
    // The folder's address (…/hug/) is the page itself.
    const cached = await cache.match(request, {ignoreSearch: true})
      || (request.mode === "navigate" ? await cache.match("index.html") : undefined);
    const fresh = fetch(request).then((response) => {
      if (response.ok) cache.put(request, response.clone());
      return response;
    });
    if (cached) {
      event.waitUntil(fresh.catch(() => undefined));
      return cached;
    }
    return fresh;
  }));
});
