"""Headless Chromium driven by Playwright, for pages of a real server with the dashboard.

Shared by the fast dashboard tests (tiny random model, served by ``live_server``) and the
default-model integration test.
The browser is Debian's ``chromium``; tests skip with the reason when it or Playwright is missing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def require_browser() -> None:
    """Skip the calling test, saying why, when Playwright or Chromium is missing."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is not installed (pip install '.[dev]')")
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run does it)")


@dataclass
class Watched:
    """What a page did: console errors, uncaught exceptions and every URL it requested."""

    base: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def foreign(self) -> list[str]:
        """Requests to any host but the server's (data: URLs stay in the page)."""
        home = urlsplit(self.base).netloc
        return [
            url
            for url in self.requests
            if not url.startswith("data:") and urlsplit(url).netloc != home
        ]


@contextmanager
def browser() -> Iterator[object]:
    """A headless Chromium (Playwright ``Browser``)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(
            executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
            args=CHROMIUM_ARGS,
        )
        try:
            yield instance
        finally:
            instance.close()


def open_page(instance, base: str, width: int = 1280, height: int = 800, key: str | None = None):
    """A fresh page (own context, so own sessionStorage) watching its console and requests.

    ``key`` is put in sessionStorage first, as if the user had entered it in this tab before.
    """
    context = instance.new_context(viewport={"width": width, "height": height})
    if key is not None:
        context.add_init_script(f"sessionStorage.setItem('affectlens-api-key', {key!r})")
    page = context.new_page()
    watched = Watched(base)
    page.on("console", lambda m: m.type == "error" and watched.errors.append(m.text))
    page.on("pageerror", lambda e: watched.errors.append(f"uncaught: {e}"))
    page.on("request", lambda r: watched.requests.append(r.url))
    page.set_default_timeout(30_000)
    return page, watched


def enter_key(page, key: str) -> None:
    """Answer the page's API-key prompt, then wait for the dashboard to be ready."""
    page.wait_for_selector("#key-form:not([hidden])")
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("body[data-ready=true]")


def send_chat(page, text: str):
    """Send ``text`` from the Chat view; returns the finished reply's locator."""
    from playwright.sync_api import expect

    replies = page.locator("#transcript .msg.assistant")
    before = replies.count()
    page.fill("#chat-input", text)
    page.press("#chat-input", "Enter")
    reply = replies.nth(before)
    expect(reply).to_have_attribute("data-done", "true", timeout=120_000)
    return reply
