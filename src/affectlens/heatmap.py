"""A self-contained HTML heatmap of an ``EmotionTrace`` (no CDN, no network).

One ``<span>`` per token carries its index and top emotions as data attributes; a ``<select>``
picks the emotion that colours the text (red above zero, blue below), and hovering a token shows
its top emotions. The page is written atomically so a failed run leaves no half-written file.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from affectlens.atomic_files import write_text_atomic
from affectlens.monitor import EmotionTrace

TOP_K = 5

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 60em; }
#text { font-family: ui-monospace, monospace; white-space: pre-wrap; line-height: 1.9; }
.tok { border-radius: 3px; padding: 1px 0; cursor: default; }
.tok.assistant { outline: 2px solid #222; }
#tip { position: fixed; display: none; background: #222; color: #fff; padding: 6px 9px;
       border-radius: 4px; font-size: 13px; pointer-events: none; white-space: pre; }
.meta { color: #555; font-size: 14px; }
"""

_SCRIPT = """
const data = JSON.parse(document.getElementById('trace-data').textContent);
const spans = document.querySelectorAll('#text .tok');
const select = document.getElementById('emotion');
const tip = document.getElementById('tip');
function paint() {
  const e = Number(select.value);
  let scale = 1e-9;
  for (const row of data.scores) scale = Math.max(scale, Math.abs(row[e]));
  spans.forEach((span, i) => {
    const v = data.scores[i][e] / scale;
    const a = Math.min(1, Math.abs(v)).toFixed(3);
    span.style.background = v >= 0 ? `rgba(220,40,40,${a})` : `rgba(40,90,220,${a})`;
  });
}
spans.forEach((span) => {
  span.addEventListener('mousemove', (ev) => {
    const top = JSON.parse(span.dataset.top);
    tip.textContent = `token ${span.dataset.index}: ${JSON.stringify(span.textContent)}\\n` +
      top.map(([name, v]) => `${name}: ${v.toFixed(2)} ${data.units}`).join('\\n');
    tip.style.display = 'block';
    tip.style.left = (ev.clientX + 12) + 'px';
    tip.style.top = (ev.clientY + 12) + 'px';
  });
  span.addEventListener('mouseleave', () => { tip.style.display = 'none'; });
});
select.addEventListener('change', paint);
paint();
"""


def _json_for_script(value: object) -> str:
    """JSON that cannot close the surrounding ``<script>`` element."""
    return json.dumps(value).replace("</", "<\\/")


def render_html(trace: EmotionTrace, *, title: str = "affectlens monitor") -> str:
    """The heatmap page for ``trace`` as one HTML string."""
    readout = trace.readout_position()
    first = trace.emotions.index(trace.top_k(readout, 1)[0][0])
    options = "".join(
        f'<option value="{i}"{" selected" if i == first else ""}>{html.escape(name)}</option>'
        for i, name in enumerate(trace.emotions)
    )
    assistant = set(trace.assistant_positions)
    spans = []
    for index, token in enumerate(trace.tokens):
        top = [[name, round(score, 4)] for name, score in trace.top_k(index, TOP_K)]
        classes = "tok assistant" if index in assistant else "tok"
        spans.append(
            f'<span class="{classes}" data-index="{index}" data-top="'
            f'{html.escape(json.dumps(top), quote=True)}">{html.escape(token)}</span>'
        )
    payload = {
        "emotions": trace.emotions,
        "units": trace.units,
        "layers": trace.layers,
        "scores": [[round(v, 4) for v in row] for row in trace.scores.tolist()],
    }
    layers = ", ".join(str(layer) for layer in trace.layers)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f'<p class="meta">units: {html.escape(trace.units)} · layers: {layers} · '
        "outlined tokens open an assistant turn · hover a token for its top emotions</p>"
        f'<label>colour by <select id="emotion">{options}</select></label>'
        f'<div id="text">{"".join(spans)}</div><div id="tip"></div>'
        f'<script type="application/json" id="trace-data">{_json_for_script(payload)}</script>'
        f"<script>{_SCRIPT}</script></body></html>\n"
    )


def write_html(trace: EmotionTrace, path: str | Path, *, title: str = "affectlens monitor") -> Path:
    """Write the heatmap page atomically (temporary file, then rename)."""
    return write_text_atomic(Path(path), render_html(trace, title=title))
