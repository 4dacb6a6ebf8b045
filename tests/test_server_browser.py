"""The page in a real browser: Playwright drives Debian's chromium (headless, as the system's
executable) against the server on loopback. It uploads an image, types labels and sees the bars,
searches a word and sees the grid, asks for every red circle and sees the boxes drawn, and sees an
error in plain words; screenshots are saved."""
from __future__ import annotations

import os
import shutil
import socket
import threading
import time

import pytest

playwright = pytest.importorskip("playwright.sync_api", reason="install the test extra: pip install -e '.[test]'")
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here: apt-get install chromium (.ci/run does)")


@pytest.fixture(scope="module")
def server(server_world):
    import uvicorn

    from grounding.interfaces.server.app import ServerSettings, create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ServerSettings(model=str(server_world / "model"), index=str(server_world / "store"),
                                    detect_model=str(server_world / "detect"), device="cpu"))
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not uv.started and time.time() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    uv.should_exit = True
    thread.join(10)


def test_the_page_classifies_searches_and_says_what_went_wrong(server, server_world, tmp_path):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        offline = []
        page.on("request", lambda r: offline.append(r.url) if not r.url.startswith((server, "data:", "blob:")) else None)
        page.goto(server)
        page.wait_for_function("document.getElementById('model-info').textContent.includes('index of 8')")

        page.click("#classify-run")  # no image yet: a plain message, not a stack trace
        page.wait_for_selector("#error:not([hidden])")
        assert "pick or drop an image first" in page.inner_text("#error")

        page.set_input_files("#classify-file", str(server_world / "scenes" / "scene0.png"))
        page.fill("#labels", "a red circle, a blue square, a green triangle")
        page.click("#classify-run")
        page.wait_for_selector("#bars li.top")
        bars = page.query_selector_all("#bars li")
        assert len(bars) == 3 and page.inner_text("#bars li.top").strip()
        assert page.is_hidden("#error")
        page.screenshot(path=str(tmp_path / "classify.png"))

        page.fill("#query", "red circle")
        page.press("#query", "Enter")
        page.wait_for_selector("#grid figure img")
        assert len(page.query_selector_all("#grid figure")) == 8
        page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth > 0)")
        page.screenshot(path=str(tmp_path / "search.png"))

        page.set_input_files("#detect-file", str(server_world / "scenes" / "scene1.png"))
        page.fill("#detect-queries", "red circle, blue square")
        page.press("#detect-queries", "Enter")
        page.wait_for_function("document.getElementById('detections').naturalWidth > 0")
        assert page.inner_text("#detect-hint").strip() and page.is_hidden("#error")
        page.screenshot(path=str(tmp_path / "detect.png"))
        if os.environ.get("GROUNDING_SCREENSHOTS"):  # to look at them: GROUNDING_SCREENSHOTS=folder
            for name in ("classify.png", "search.png", "detect.png"):
                shutil.copy(tmp_path / name, os.environ["GROUNDING_SCREENSHOTS"])
        browser.close()
    assert offline == []  # the page fetched nothing from anywhere but the server
    assert (tmp_path / "classify.png").stat().st_size > 10_000 and (tmp_path / "search.png").stat().st_size > 10_000
