// The page's actuators section: each part's current value and quiet hours, from `state`.
"use strict";

(() => {
  const show = {
    vibration: (v) => (v > 0 ? `${Math.round(v * 100)} %` : "still"),
    servo: (v) => (v === null ? "limp" : `${v}°`),
    warmer: (v) => (v ? "warming" : "off"),
  };
  socket.on("state", (s) => {
    const parts = s.actuators || {};
    const names = Object.keys(parts);
    document.getElementById("parts").hidden = names.length === 0 && !s.quiet;
    document.getElementById("parts-quiet").hidden = !s.quiet;
    const list = document.getElementById("parts-list");
    list.replaceChildren();
    for (const name of names) {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = (show[name] || String)(parts[name]);
      list.append(dt, dd);
    }
  });
})();
