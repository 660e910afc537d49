// A colour-blind-safe diverging scale (ColorBrewer PuOr, 9 classes: purple = below the
// neutral-text baseline, orange = above) and categorical colours (Okabe-Ito).

const PUOR = ["#542788", "#8073ac", "#b2abd2", "#d8daeb", "#f7f7f7", "#fee0b6", "#fdb863", "#e08214", "#b35806"];
export const OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"];

function hex(c) { return [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)); }

// value in units -> CSS colour; `limit` is the value drawn at full intensity.
export function diverging(value, limit) {
  if (value === null || value === undefined || Number.isNaN(value)) return "transparent";
  const t = Math.max(-1, Math.min(1, value / limit));
  const pos = (t + 1) / 2 * (PUOR.length - 1);
  const i = Math.min(PUOR.length - 2, Math.floor(pos));
  const f = pos - i;
  const a = hex(PUOR[i]);
  const b = hex(PUOR[i + 1]);
  const rgb = a.map((x, k) => Math.round(x + (b[k] - x) * f));
  return `rgb(${rgb.join(",")})`;
}

// Dark text on light cells, light text on the saturated ends.
export function textOn(value, limit) {
  return Math.abs(value / limit) > 0.7 ? "#fff" : "#111";
}

export function limitFor(units) { return units === "z" ? 3 : units === "cosine" ? 0.3 : 1; }

export function legend(element, units, emotion) {
  const limit = limitFor(units);
  const stops = PUOR.map((c, i) => `${c} ${(i / (PUOR.length - 1)) * 100}%`).join(",");
  element.innerHTML = "";
  const title = document.createElement("div");
  title.className = "legend-title";
  title.textContent = `${emotion || "emotion"} readout (${units}${units === "z" ? "-score vs neutral text" : ""})`;
  const bar = document.createElement("div");
  bar.className = "legend-bar";
  bar.style.background = `linear-gradient(to right, ${stops})`;
  const ticks = document.createElement("div");
  ticks.className = "legend-ticks";
  for (const v of [-limit, -limit / 2, 0, limit / 2, limit]) {
    const s = document.createElement("span");
    s.textContent = (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v);
    ticks.appendChild(s);
  }
  element.append(title, bar, ticks);
}

export function categorical(i) { return OKABE_ITO[i % OKABE_ITO.length]; }
