"""Integration: ``affectlens serve`` on the real default model, its dashboard in Chromium.

The server is the README's command run as a subprocess (with an audit store and a guardrail
policy file); the test opens the URL it prints, chats, steers with a slider, trips an inline
guardrail with a frightening prompt, then finds the chat in the Requests view with the same
tokens and marker.
Screenshots of each view land in the test's tmp folder; with ``AFFECTLENS_DOCS_SCREENSHOT=PATH``
the Chat view is also written to PATH (how ``docs/dashboard.png`` is made).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import httpx
import pytest

from live_server import free_port
from web.dashboard_harness import browser, open_page, require_browser, send_chat

pytestmark = pytest.mark.integration

# The server's guardrail file: a fixed z threshold (1.5 SD of the neutral corpus's readouts).
POLICY = """name: fear-watch
units: z
rules:
  - name: afraid-high
    when: {emotion: afraid, stat: value, above: 1.5}
    action: flag
"""
FRIGHTENING = "I heard a loud crash downstairs at night and I am scared. What should I do?"


def peak_policy(base: str) -> tuple[dict, int]:
    """An inline policy that flags the frightening prompt's reply at its most afraid token.

    The reply (greedy, 48 tokens) is read through the API first; the threshold sits halfway
    between its highest and second-highest *afraid* readout, so the rule fires at exactly one
    known token. What is tested is where the page marks the firing, not how afraid the model is.
    """
    body = {"messages": [{"role": "user", "content": FRIGHTENING}], "max_tokens": 48,
            "temperature": 0, "affectlens": {"telemetry": "tokens", "units": "z"}}  # fmt: skip
    reply = httpx.post(base + "/v1/chat/completions", json=body, timeout=300).json()
    afraid = [token["afraid"] for token in reply["affectlens"]["tokens"]]
    top, second = sorted(afraid, reverse=True)[:2]
    assert top > second
    rule = {"name": "afraid-peak", "when": {"emotion": "afraid", "above": (top + second) / 2},
            "action": "flag"}  # fmt: skip
    return {"name": "peak", "units": "z", "rules": [rule]}, afraid.index(top)


@pytest.fixture(scope="module")
def served(small_vectors_path, tmp_path_factory):
    require_browser()
    folder = tmp_path_factory.mktemp("served")
    policy = folder / "fear-watch.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    port = free_port()
    argv = [sys.executable, "-m", "affectlens", "serve", "--vectors", str(small_vectors_path),
            "--port", str(port), "--guardrail", str(policy),
            "--db", str(folder / "audit.sqlite")]  # fmt: skip
    process = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    found = threading.Event()

    def read() -> None:
        for line in process.stderr:
            lines.append(line)
            if "dashboard: open " in line:
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert found.wait(600), "".join(lines)
        url = re.search(r"dashboard: open (\S+)", "".join(lines)).group(1)
        assert url == f"http://127.0.0.1:{port}/"
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(url).status_code == 200:
                    break
            except httpx.TransportError:
                assert process.poll() is None and time.time() < deadline, "".join(lines)
                time.sleep(0.2)
        yield url.rstrip("/")
    finally:
        process.terminate()
        process.wait(timeout=30)


def audited(base: str, request_id: str) -> dict:
    deadline = time.time() + 30
    while True:
        reply = httpx.get(f"{base}/v1/affectlens/requests/{request_id}")
        if reply.status_code == 200 or time.time() > deadline:
            assert reply.status_code == 200, reply.text
            return reply.json()
        time.sleep(0.1)


def test_the_dashboard_on_the_default_model(served, tmp_path):
    with browser() as instance:
        page, watched = open_page(instance, served)
        page.goto(served + "/")
        page.wait_for_selector("body[data-ready=true]")
        assert "qwen" in page.text_content("#model-name").lower()
        assert page.input_value("#guardrail-select") == "fear-watch"
        assert "readout, in z" in page.text_content("#chat-legend")

        # a plain chat: coloured tokens, five emotions on hover
        page.fill("#max-tokens", "32")
        reply = send_chat(page, "Tell me about the sea in two sentences.")
        spans = reply.locator(".tok")
        assert spans.count() >= 8
        colours = spans.evaluate_all("s => s.map(x => x.style.backgroundColor)")
        assert all(c.startswith("rgb(") for c in colours) and len(set(colours)) > 3
        spans.nth(2).hover()
        assert page.locator("#tooltip li").count() == 5

        # a slider: the next request is steered, as the audit store records it
        page.select_option("#steer-add", "calm")
        page.click("#steer-add-btn")
        for _ in range(10):
            page.locator("#steer-calm").press("ArrowRight")
        steered = send_chat(page, "How was your day?")
        record = audited(served, steered.get_attribute("data-request-id"))
        assert record["steering"]["alphas"] == {"calm": 0.1}
        page.click(".slider-row button")  # stop steering

        # a guardrail that the frightening prompt trips, marked where it fired
        policy, peak = peak_policy(served)
        page.click("#clear")
        page.fill("#max-tokens", "48")
        page.select_option("#colour-emotion", "afraid")
        page.select_option("#guardrail-select", "__custom")
        page.fill("#policy-json", json.dumps(policy))
        reply = send_chat(page, FRIGHTENING)
        markers = reply.locator(".guard-marker[data-rule=afraid-peak]")
        assert markers.count() == 1
        assert markers.evaluate("m => m.previousElementSibling.dataset.index") == str(peak)
        assert f"afraid-peak flagged the reply at token {peak}" in page.text_content("#chat-events")
        page.evaluate("document.activeElement.blur()")  # no focus ring in the shot
        page.screenshot(path=tmp_path / "chat.png")
        docs = os.environ.get("AFFECTLENS_DOCS_SCREENSHOT")
        if docs:
            page.screenshot(path=docs)
        request_id = reply.get_attribute("data-request-id")
        shown = reply.locator(".tok").evaluate_all("s => s.map(x => x.textContent)")

        # the Requests view lists it; opening it shows the same tokens and the marker
        page.click("#tab-requests")
        page.select_option("#f-fired", "rule")
        page.fill("#f-guardrail", "afraid-peak")
        page.click("#filters button[type=submit]")
        row = page.locator(f'#requests-table tbody tr[data-id="{request_id}"]')
        row.click()
        page.wait_for_selector("#request-detail:not([hidden])")
        detail = page.locator("#detail-tokens .tok").evaluate_all("s => s.map(x => x.textContent)")
        assert detail == shown
        assert page.locator("#detail-tokens .guard-marker").count() == markers.count()
        page.screenshot(path=tmp_path / "requests.png", full_page=True)

        page.click("#tab-traffic")
        page.wait_for_selector("#view-traffic[data-updated]")
        assert "afraid-peak" in page.evaluate(
            "Chart.getChart('chart-guard').data.datasets.map(d => d.label)"
        )
        page.screenshot(path=tmp_path / "traffic.png", full_page=True)
        page.click("#tab-vectors")
        page.wait_for_selector("#vectors-meta dd")
        assert "15" in page.text_content("#vectors-meta")
        page.wait_for_selector("#validation-body:text('No validation report')")
        page.screenshot(path=tmp_path / "vectors.png", full_page=True)
        assert watched.errors == [] and watched.foreign() == []
