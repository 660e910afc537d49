// Colour scales readable by colour-blind viewers: a diverging purple-orange scale (ColorBrewer
// PuOr, 9 classes; purple = below the neutral baseline, orange = above) for readouts, and the
// Okabe-Ito palette for categories (lines, rules).

const PUOR = ["#542788", "#8073ac", "#b2abd2", "#d8daeb", "#f7f7f7", "#fee0b6", "#fdb863", "#e08214", "#b35806"];
const OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];

export const UNIT_TEXT = {
  z: "z-score: standard deviations from the mean over neutral text",
  p99: "p99 scale: 0 = neutral mean, 1 = the emotional stories' 99th percentile",
  raw: "raw projection onto the emotion direction (uncalibrated)",
};

function hex(c) { return [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)); }

// A readout in `units` -> a CSS colour; `limit` is the value drawn at full intensity.
export function diverging(value, limit) {
  if (typeof value !== "number" || Number.isNaN(value)) return "transparent";
  const t = Math.max(-1, Math.min(1, value / limit));
  const pos = ((t + 1) / 2) * (PUOR.length - 1);
  const i = Math.min(PUOR.length - 2, Math.floor(pos));
  const f = pos - i;
  const a = hex(PUOR[i]);
  const b = hex(PUOR[i + 1]);
  return `rgb(${a.map((x, k) => Math.round(x + (b[k] - x) * f)).join(",")})`;
}

function luminance(rgb) {
  const [r, g, b] = rgb.map((x) => { const c = x / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

// Black or white text, whichever contrasts more with the cell colour of `value`.
export function textOn(value, limit) {
  const rgb = diverging(value, limit).match(/\d+/g);
  if (!rgb) return "";
  const l = luminance(rgb.map(Number));
  return (l + 0.05) / 0.05 >= 1.05 / (l + 0.05) ? "#111" : "#fff";
}

// The value drawn at full intensity: the largest magnitude among `values` (the tokens shown),
// rounded up to 1-2-5 so the legend's ticks are round; the legend shows it, in `units`.
export function limitFor(units, values = []) {
  const top = Math.max(0, ...values.filter((v) => typeof v === "number").map(Math.abs));
  if (!top) return units === "z" ? 3 : 1;
  const power = 10 ** Math.floor(Math.log10(top));
  return [1, 2, 5, 10].map((m) => m * power).find((v) => v >= top);
}

const signed = (v) => (v > 0 ? "+" : v < 0 ? "−" : "") + Math.abs(v);

// Draw the scale's legend into `element`: title with emotion and units, the bar, five ticks.
export function legend(element, units, emotion, limit) {
  const stops = PUOR.map((c, i) => `${c} ${(i / (PUOR.length - 1)) * 100}%`).join(",");
  element.innerHTML = "";
  const title = document.createElement("div");
  title.className = "legend-title";
  title.textContent = `${emotion || "emotion"} readout, in ${units}`;
  const bar = document.createElement("div");
  bar.className = "legend-bar";
  bar.style.background = `linear-gradient(to right, ${stops})`;
  bar.setAttribute("role", "img");
  bar.setAttribute("aria-label", `colour scale from purple at ${signed(-limit)} through white at 0 to orange at ${signed(limit)} ${units}`);
  const ticks = document.createElement("div");
  ticks.className = "legend-ticks";
  for (const v of [-limit, -limit / 2, 0, limit / 2, limit]) {
    const s = document.createElement("span");
    s.textContent = signed(Number(v.toPrecision(3)));
    ticks.appendChild(s);
  }
  const note = document.createElement("div");
  note.className = "legend-note muted";
  note.textContent = `${UNIT_TEXT[units] || units}. Purple: below, orange: above.`;
  element.append(title, bar, ticks, note);
}

export function categorical(i) { return OKABE_ITO[i % OKABE_ITO.length]; }
