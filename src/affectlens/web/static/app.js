// Entry point: read what the server holds, then start the four views behind an ARIA tab list.

import { getJSON, onAuthNeeded, setApiKey } from "./api.js";
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
    if (active && active !== name) views[active].hide();
    active = name;
    views[name].show();
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
  select(list.find((t) => `#${t.id.slice(4)}` === location.hash) || list[0], false);
}

async function main() {
  onAuthNeeded(() => {
    $("key-form").hidden = false;
    $("api-key").focus();
    banner("This server needs an API key: enter it above (it is kept for this tab only).");
  });
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setApiKey($("api-key").value.trim());
    location.reload();
  });
  let info;
  try {
    info = await getJSON("/v1/affectlens/emotions");
  } catch (err) {
    if (err.status !== 401) banner(`Cannot read /v1/affectlens/emotions: ${err.message}`);
    return;
  }
  $("model-name").textContent = info.model;
  initChat(info, banner);
  tabs({
    chat: { show() {}, hide() {} },
    traffic: initTraffic(info),
    requests: initRequests(info, banner),
    vectors: initVectors(info),
  });
  document.body.dataset.ready = "true";
}

main();
