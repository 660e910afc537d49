// Entry point: read what the server holds, then start the four views behind an ARIA tab list.

import { getJSON, normaliseInfo, onAuthNeeded, setApiKey } from "./api.js";
import { initChat } from "./chat.js";
import { initRequests } from "./requests.js";
import { initTraffic } from "./traffic.js";
import { initVectors } from "./vectors.js";

const $ = (id) => document.getElementById(id);

function banner(message) {
  const el = $("banner");
  el.hidden = !message;
  el.textContent = message || "";
}

function tabs(views) {
  const list = [...document.querySelectorAll('[role="tab"]')];
  let active = null;
  function select(tab, focus = true) {
    for (const t of list) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
      $(t.getAttribute("aria-controls")).hidden = !on;
    }
    const name = tab.id.slice(4);
    if (active && active !== name && views[active]) views[active].hide();
    active = name;
    if (views[name]) views[name].show();
    if (focus) tab.focus();
    history.replaceState(null, "", `#${name}`);
  }
  list.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab));
    tab.addEventListener("keydown", (e) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
      if (step) { e.preventDefault(); select(list[(i + step + list.length) % list.length]); }
      if (e.key === "Home") { e.preventDefault(); select(list[0]); }
      if (e.key === "End") { e.preventDefault(); select(list[list.length - 1]); }
    });
  });
  const start = list.find((t) => `#${t.id.slice(4)}` === location.hash) || list[0];
  select(start, false);
}

async function main() {
  onAuthNeeded(() => { $("key-form").hidden = false; banner("The server needs an API key."); });
  $("key-form").addEventListener("submit", (e) => { e.preventDefault(); setApiKey($("api-key").value); location.reload(); });
  let info;
  try {
    info = normaliseInfo(await getJSON("/v1/affectlens/emotions"));
  } catch (err) {
    banner(`error: cannot read /v1/affectlens/emotions (${err.message})`);
    return;
  }
  $("model-name").textContent = info.model;
  const views = {
    chat: { show() {}, hide() {} },
    traffic: initTraffic(info, banner),
    requests: initRequests(info, banner),
    vectors: initVectors(info),
  };
  initChat(info, banner);
  tabs(views);
  document.body.dataset.ready = "true";
}

if (window.Chart) main(); else window.addEventListener("load", main);
