"""The dashboard in a real browser (headless Chromium) against a real server on loopback.

The server is ``create_app`` with a SQLite audit store plus ``mount_dashboard``, as
``affectlens serve`` builds it, over a tiny random Llama whose artifact has a real validation
report beside it (``affectlens validate`` run on the tiny model). It requires an API key: the
pages start with it in sessionStorage, and one test goes through the page's key prompt.
Screenshots of each view land in the test's tmp folder.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest

from affectlens.cli import main
from affectlens.cli.serve_cmd import dashboard_url
from affectlens.engine import Engine
from affectlens.guardrails import GuardrailPolicy
from affectlens.serve.app import ServerSettings, create_app
from affectlens.serve.audit import AuditStore
from affectlens.vectors import EmotionVectors
from affectlens.web import mount_dashboard
from conftest import EMO_EMOTIONS, build_emotion_vectors
from live_server import uvicorn_serving
from web.dashboard_harness import browser, enter_key, open_page, require_browser, send_chat

KEY = "dash-key-42"
ALWAYS = {
    "name": "always",
    "units": "raw",
    "rules": [
        {"name": "any-afraid", "when": {"emotion": "afraid", "above": -1e6}, "action": "flag"}
    ],
}
STORY = {
    "calm": "The lake was still and she breathed slowly, letting the quiet evening settle.",
    "desperate": "He begged again, nothing left, every door shut, he had to find money tonight.",
    "happy": "She laughed out loud when the letter came, grinning all the way down the road.",
    "afraid": "Footsteps behind him in the dark alley; his heart pounded and he dared not turn.",
    "angry": "She slammed the door so hard the frame shook, furious at the lie he had told.",
}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory, emo_model, emo_model_dir):
    """Tiny vectors on disk with ``affectlens validate``'s report beside them."""
    folder = tmp_path_factory.mktemp("artifact")
    vectors = build_emotion_vectors(emo_model, EMO_EMOTIONS, model_id=str(emo_model_dir))
    path = vectors.save(folder / "vectors.safetensors")
    corpus = folder / "stories.jsonl"
    corpus.write_text("".join(
        json.dumps({"emotion": e, "split": split, "topic": "t", "text": f"{i} {text}"}) + "\n"
        for e, text in STORY.items() for split, n in (("train", 4), ("test", 2)) for i in range(n)
    ), encoding="utf-8")  # fmt: skip
    norms = folder / "norms.csv"
    norms.write_text("emotion,valence,arousal\ncalm,7,2\ndesperate,2,7\nhappy,8,6\nafraid,2,8\n")
    argv = ["validate", "--vectors", str(path), "--corpus", str(corpus), "--norms", str(norms),
            "--out", str(folder / "validation"), "--clusters", "3", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    return path


@pytest.fixture(scope="module")
def server(artifact, emo_model, tmp_path_factory):
    require_browser()
    vectors = EmotionVectors.load(artifact)
    engine = Engine(emo_model, vectors).start()
    audit = AuditStore(tmp_path_factory.mktemp("audit") / "audit.sqlite")
    settings = ServerSettings(
        model_name="tiny", api_key=KEY, units="raw",
        policies={"always": GuardrailPolicy.from_dict(ALWAYS)},
    )  # fmt: skip
    app = create_app(engine, vectors, settings, audit=audit)
    mount_dashboard(app, artifact)
    with uvicorn_serving(app) as base:
        yield base, vectors
    engine.close()
    audit.close()


@pytest.fixture(scope="module")
def chromium(server):
    with browser() as instance:
        yield instance


@pytest.fixture
def page(chromium, server):
    page, watched = open_page(chromium, server[0], key=KEY)
    page.goto(server[0] + "/")
    page.wait_for_selector("body[data-ready=true]")
    yield page
    assert watched.errors == [], f"console errors: {watched.errors}"
    assert watched.foreign() == [], f"requests to other hosts: {watched.foreign()}"
    page.context.close()


def audited(base: str, request_id: str) -> dict:
    """The audit store's record of ``request_id``, through its API (written in the background)."""
    deadline = time.time() + 30
    while True:
        reply = httpx.get(f"{base}/v1/affectlens/requests/{request_id}",
                          headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
        if reply.status_code == 200 or time.time() > deadline:
            assert reply.status_code == 200, reply.text
            return reply.json()
        time.sleep(0.1)


def api(base: str, body: dict) -> dict:
    """The same chat request straight to the API (not through the page)."""
    reply = httpx.post(base + "/v1/chat/completions", json=body, timeout=60,
                       headers={"Authorization": f"Bearer {KEY}"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    return reply.json()


def captured_body(page, text: str) -> tuple[dict, object]:
    """Send ``text`` from the page; the chat request body it posted and the reply locator."""
    with page.expect_request("**/v1/chat/completions") as request:
        reply = send_chat(page, text)
    return request.value.post_data_json, reply


def tokens_of(reply) -> list[dict]:
    return reply.locator(".tok").evaluate_all(
        "spans => spans.map(s => ({text: s.textContent, value: s.dataset.value ?? null,"
        " background: s.style.backgroundColor, index: Number(s.dataset.index),"
        " readouts: s._readouts}))"
    )


def test_the_page_is_served_with_its_assets_and_refuses_other_origins(server):
    page = httpx.get(server[0] + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    for asset in ("app.js", "style.css", "vendor/chart.umd.min.js"):
        assert f"/dashboard/static/{asset}" in page.text
        assert httpx.get(f"{server[0]}/dashboard/static/{asset}").status_code == 200
    assert "https://" not in page.text and "http://" not in page.text
    assert httpx.get(server[0] + "/v1/affectlens/validation").status_code == 401


def test_without_a_key_the_page_asks_for_one_and_a_wrong_one_asks_again(chromium, server):
    page, watched = open_page(chromium, server[0])
    page.goto(server[0] + "/")
    page.wait_for_selector("#key-form:not([hidden])")
    assert "needs an API key" in page.text_content("#banner")
    page.fill("#api-key", "wrong")
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-form:not([hidden])")
    assert page.get_attribute("body", "data-ready") is None
    enter_key(page, KEY)
    assert page.evaluate("sessionStorage.getItem('affectlens-api-key')") == KEY
    assert page.text_content("#model-name") == "tiny"
    # 401s are the only console errors: the browser logs each failed fetch
    assert all("401" in error for error in watched.errors) and watched.foreign() == []
    page.context.close()


def test_chat_streams_coloured_tokens_equal_to_the_api_reply_and_hover_shows_five(
    page, server, tmp_path
):
    body, reply = captured_body(page, "Tell me about the sea.")
    assert body["stream"] is True and body["user"] == "dashboard"
    assert body["affectlens"] == {"telemetry": "tokens", "units": "raw"}
    direct = api(server[0], {**body, "stream": False})
    tokens = tokens_of(reply)
    assert tokens and [t["index"] for t in tokens] == list(range(len(tokens)))
    assert "".join(t["text"] for t in tokens) == direct["choices"][0]["message"]["content"]
    assert [t["readouts"] for t in tokens] == direct["affectlens"]["tokens"]
    # coloured by the chosen emotion: purple-ish below zero, orange-ish above
    emotion = page.input_value("#colour-emotion")
    for token in tokens:
        red, _, blue = (int(x) for x in token["background"][4:-1].split(","))
        value = token["readouts"][emotion]
        assert float(token["value"]) == value
        if abs(value) > 0.05:
            assert (red > blue) == (value > 0), (token, value)
    assert len({t["background"] for t in tokens}) > 1
    assert "readout, in raw" in page.text_content("#chat-legend")
    visible = [t["index"] for t in tokens if t["text"].strip()]
    assert visible, tokens
    reply.locator(f'.tok[data-index="{visible[0]}"]').hover()
    tip = page.locator("#tooltip")
    assert tip.is_visible()
    names = [line.split(" ")[0] for line in tip.locator("li").all_text_contents()]
    first = tokens[visible[0]]["readouts"]
    assert names == sorted(first, key=first.get, reverse=True)[:5]
    # from the keyboard: the reply is one tab stop, arrow keys walk its tokens, each with its tip
    page.mouse.move(0, 0)
    assert not tip.is_visible()
    page.focus("#chat-input")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.dataset.index") == "0"
    page.keyboard.press("End")
    last = str(len(tokens) - 1)
    assert page.evaluate("document.activeElement.dataset.index") == last
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.activeElement.dataset.index") == str(len(tokens) - 2)
    assert tip.is_visible() and f"token {len(tokens) - 2} " in tip.text_content()
    assert reply.locator(".tok[tabindex='0']").count() == 1
    page.screenshot(path=tmp_path / "chat.png")


def test_a_slider_steers_the_next_request_at_the_layer_shown(page, server):
    base, vectors = server
    page.select_option("#steer-add", "calm")
    page.click("#steer-add-btn")
    slider = page.locator("#steer-calm")
    assert slider.get_attribute("min") == "-1" and slider.get_attribute("max") == "1"
    assert page.input_value("#steer-layer") == str(vectors.default_layer)
    assert "(recommended)" in page.locator("#steer-layer option:checked").text_content()
    for _ in range(30):  # keyboard only: 30 steps of 0.01
        slider.press("ArrowRight")
    assert page.text_content("#transcript ~ * output, .slider-row output") == "0.30"
    body, reply = captured_body(page, "Tell me about the sea.")
    assert body["affectlens"]["steer"] == {"calm": 0.3}
    assert body["affectlens"]["layers"] == [vectors.default_layer]
    record = audited(base, reply.get_attribute("data-request-id"))
    assert record["steering"] == {"alphas": {"calm": 0.3}, "layers": [vectors.default_layer],
                                  "positions": "all"}  # fmt: skip
    steered = api(base, {**body, "stream": False})
    plain = api(base, {**body, "stream": False, "affectlens": {"telemetry": "tokens"}})
    text = "".join(t["text"] for t in tokens_of(reply))
    assert text == steered["choices"][0]["message"]["content"]
    assert steered["affectlens"]["tokens"] != plain["affectlens"]["tokens"]
    assert "steered calm +0.3 at layer" in page.locator(".msg-meta").last.text_content()


def test_a_guardrail_that_fires_is_marked_in_the_text_and_listed(page, tmp_path):
    page.select_option("#guardrail-select", "always")
    body, reply = captured_body(page, "Hello there")
    assert body["affectlens"]["guardrail"] == "always"
    marker = reply.locator(".guard-marker")
    assert marker.count() == 1
    assert marker.get_attribute("data-rule") == "any-afraid"
    assert marker.get_attribute("data-action") == "flag"
    # placed right after the token where it fired (token 0)
    assert marker.evaluate("m => m.previousElementSibling.dataset.index") == "0"
    assert "any-afraid flagged the reply at token 0" in page.text_content("#chat-events")
    timeline = "Chart.getChart('chat-timeline').options.plugins.guardrailLines.events"
    assert page.evaluate(f"{timeline}.map(e => [e.rule, e.token_index])") == [["any-afraid", 0]]
    page.screenshot(path=tmp_path / "chat-guardrail.png")


def test_the_vectors_view_shows_the_artifact_and_its_validation_report(page, server, tmp_path):
    page.click("#tab-vectors")
    page.wait_for_selector("#validation-body dl")
    meta = page.text_content("#vectors-meta")
    assert "tiny" in meta and "recommended layer" in meta
    assert page.locator("#vectors-emotions li").all_text_contents() == EMO_EMOTIONS
    report = page.text_content("#validation-body")
    assert "top-1 accuracy" in report and "held-out stories10" in report
    assert "pc1 ~ valence Pearson r" in report
    assert page.locator("#pca-box").is_visible()
    page.screenshot(path=tmp_path / "vectors.png", full_page=True)


def test_the_tabs_work_from_the_keyboard_and_each_view_is_screenshotted(page, tmp_path):
    page.focus("#tab-chat")
    for name in ("traffic", "requests", "vectors", "chat"):
        page.keyboard.press("ArrowRight")
        assert page.evaluate("document.activeElement.id") == f"tab-{name}"
        assert page.locator(f"#view-{name}").is_visible()
        page.screenshot(path=tmp_path / f"tab-{name}.png")
    page.keyboard.press("End")
    assert page.evaluate("location.hash") == "#vectors"


def test_at_phone_width_nothing_overflows_sideways(chromium, server, tmp_path):
    page, watched = open_page(chromium, server[0], width=390, height=844, key=KEY)
    page.goto(server[0] + "/")
    page.wait_for_selector("body[data-ready=true]")
    send_chat(page, "Hi")
    for name in ("chat", "traffic", "requests", "vectors"):
        page.click(f"#tab-{name}")
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, (name, width)
        page.screenshot(path=tmp_path / f"phone-{name}.png", full_page=True)
    assert watched.errors == [] and watched.foreign() == []
    page.context.close()


def test_the_requests_table_lists_the_chat_and_opening_it_shows_the_same_tokens(
    page, server, tmp_path
):
    page.fill("#chat-user", "table-test")
    page.select_option("#guardrail-select", "always")
    _, reply = captured_body(page, "Tell me about the sea.")
    request_id = reply.get_attribute("data-request-id")
    shown = tokens_of(reply)
    audited(server[0], request_id)
    page.click("#tab-requests")
    page.fill("#f-user", "table-test")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#requests-status:text('1–1 of 1')")
    assert page.locator("#requests-table tbody tr").count() == 1
    row = page.locator(f'#requests-table tbody tr[data-id="{request_id}"]')
    assert "table-test" in row.text_content() and "any-afraid" in row.text_content()
    row.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#request-detail:not([hidden])")
    assert page.text_content("#detail-id") == request_id
    detail = tokens_of(page.locator("#detail-tokens"))
    assert [(t["text"], t["readouts"]) for t in detail] == [
        (t["text"], t["readouts"]) for t in shown
    ]
    assert page.locator("#detail-tokens .guard-marker[data-rule=any-afraid]").count() == 1
    assert "user: Tell me about the sea." in page.text_content("#detail-prompt")
    page.screenshot(path=tmp_path / "requests.png", full_page=True)
    # the filters are the API's
    with page.expect_request("**/v1/affectlens/requests?*") as listing:
        page.select_option("#f-emotion", "calm")
        page.fill("#f-above", "1000")
        page.select_option("#f-fired", "rule")
        page.fill("#f-guardrail", "any-afraid")
        page.click("#filters button[type=submit]")
    query = listing.value.url.split("?", 1)[1]
    assert sorted(query.split("&")) == sorted(
        ["limit=20", "offset=0", "user=table-test", "emotion=calm", "above=1000",
         "guardrail=any-afraid"]
    )  # fmt: skip
    page.wait_for_selector("#requests-status:text('No requests match.')")
    page.fill("#f-above", "")
    page.select_option("#f-fired", "false")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#requests-status:text('No requests match.')")
    page.select_option("#f-fired", "true")
    page.click("#filters button[type=submit]")
    page.wait_for_selector("#requests-status:text('1–1 of 1')")


REQUESTS_CHARTED = "Chart.getChart('chart-rpm').data.datasets[0].data.reduce((a, b) => a + b, 0)"


def test_the_traffic_view_counts_requests_and_firings_without_a_reload(page, server, tmp_path):
    page.select_option("#guardrail-select", "always")
    page.click("#tab-traffic")
    page.wait_for_selector("#view-traffic[data-updated]")
    before = page.evaluate(f"{REQUESTS_CHARTED}")
    page.click("#tab-chat")
    send_chat(page, "Hello")
    page.click("#tab-traffic")
    page.wait_for_function(f"n => {REQUESTS_CHARTED} > n", arg=before)
    rules = page.evaluate("Chart.getChart('chart-guard').data.datasets.map(d => d.label)")
    assert "any-afraid" in rules
    labels = page.evaluate("Chart.getChart('chart-dist').data.labels")
    assert labels and all("(n=" in label for label in labels)
    assert "requests and" in page.text_content("#traffic-status")
    page.screenshot(path=tmp_path / "traffic.png", full_page=True)


def test_the_printed_dashboard_url_is_one_a_browser_can_open():
    assert dashboard_url("127.0.0.1", 8000) == "http://127.0.0.1:8000/"
    assert dashboard_url("0.0.0.0", 80) == "http://127.0.0.1:80/"
    assert dashboard_url("::1", 8000) == "http://[::1]:8000/"
    assert dashboard_url("example.internal", 9) == "http://example.internal:9/"
