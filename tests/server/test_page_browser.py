"""The web page in a real browser: Debian's headless Chromium driven by Selenium.

``scripts/setup.sh`` installs ``chromium`` and ``chromium-driver`` where they are missing (as
root, with apt-get); this test skips, loudly, only where they could not be installed.
Screenshots go to ``test-artifacts/browser/`` (or ``$RAGMEM_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import pytest

from tests.server.conftest import server_settings, write_corpus

pytest.importorskip("fastapi")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    message = (
        "SKIPPED THE BROWSER TEST: chromium and/or chromium-driver are not installed and scripts/setup.sh"
        " could not install them (it needs root and apt-get). Install them: apt-get install chromium chromium-driver"
    )
    warnings.warn(message, stacklevel=1)
    pytest.skip(message, allow_module_level=True)

ARTIFACTS = Path(os.environ.get("RAGMEM_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts")) / "browser"


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_chat_model):
    from rag_memory.pipelines.rag import RagPipeline
    from rag_memory.server import ServerOptions, create_app
    from tests.helpers.http_server import uvicorn_server

    base = tmp_path_factory.mktemp("server-page")
    write_corpus(base / "docs")
    model = tiny_chat_model
    rag = RagPipeline(server_settings(base / "home", generator="transformers", generator_model=str(model),
                                      device="cpu", max_new_tokens=24))
    app = create_app(rag, options=ServerOptions(ingest_roots=[base / "docs"]))
    with uvicorn_server(app) as url:
        yield {"url": url, "rag": rag}


def _browser(language: str):
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,900", f"--lang={language}", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": language})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


@pytest.fixture(scope="module")
def english(server):
    driver = _browser("en-US")
    yield driver
    driver.quit()


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def wait(driver, condition, seconds: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(lambda d: condition(d))


def by_css(driver, css: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def ask(driver, question: str):
    """Type a question, send it, wait for the finished answer; returns (bubble, text updates seen)."""
    # Count the answer's text updates while it streams, to see that it arrived in pieces.
    driver.execute_script("""
        window.__updates = 0;
        const box = document.getElementById('messages');
        if (window.__observer) window.__observer.disconnect();
        window.__observer = new MutationObserver((records) => {
          for (const r of records) {
            const node = r.target.nodeType === 3 ? r.target.parentNode : r.target;
            if (node && node.closest && node.closest('.msg.assistant.streaming')) window.__updates++;
          }
        });
        window.__observer.observe(box, {subtree: true, childList: true, characterData: true});
    """)
    before = len(by_css(driver, ".msg.assistant"))
    box = by_css(driver, "#question")[0]
    box.clear()
    box.send_keys(question)
    by_css(driver, "#send")[0].click()
    wait(driver, lambda d: len(by_css(d, ".msg.assistant")) > before and not by_css(d, ".msg.assistant.streaming"))
    return by_css(driver, ".msg.assistant")[-1], driver.execute_script("return window.__updates")


def test_the_page_ingests_answers_in_english_and_chinese_opens_citations_and_forgets(server, english):
    d = english
    d.get(server["url"] + "/")
    wait(d, lambda d: by_css(d, "#kb-status dd"))
    assert by_css(d, "#send")[0].text == "Ask"
    assert d.execute_script("return document.documentElement.lang") == "en"
    shot(d, "01-empty")

    # Ingest the corpus through the panel (the path is prefilled with the server's ingest root).
    by_css(d, "#ingest-btn")[0].click()
    wait(d, lambda d: by_css(d, "#job")[0].get_attribute("data-state") == "done")
    assert "3 added" in by_css(d, "#job")[0].text
    wait(d, lambda d: "3 documents" in by_css(d, "#status-line")[0].text, 15)
    shot(d, "02-ingested")

    bubble, updates = ask(d, "What happens when a file is deleted on re-ingest?")
    assert "error" not in bubble.get_attribute("class")
    assert bubble.find_elements("css selector", ".answer-text")[0].text.strip()
    assert updates >= 2, "the answer did not stream"
    chips = bubble.find_elements("css selector", ".source-chip")
    assert chips and "sync.md" in chips[0].text
    chips[0].click()
    wait(d, lambda d: by_css(d, "#passage")[0].is_displayed())
    assert "re-ingest removes its chunks" in by_css(d, "#passage-text")[0].text
    assert "sync.md" in by_css(d, "#passage-where")[0].text
    shot(d, "03-english-answer-with-passage")

    bubble, updates = ask(d, "长城有多长？")
    assert updates >= 2
    chip = next(c for c in bubble.find_elements("css selector", ".source-chip") if "greatwall" in c.text)
    chip.click()
    wait(d, lambda d: "两万多公里" in by_css(d, "#passage-text")[0].text, 10)
    shot(d, "04-chinese-answer-with-passage")

    # A statement about the user shows up in the memory panel; forgetting it removes it.
    ask(d, "My name is Alice and I live in Chengdu.")
    wait(d, lambda d: any("Chengdu" in li.text for li in by_css(d, "#memory-list li")), 15)
    sessions = [li.text for li in by_css(d, "#sessions li")]
    assert sessions and all("web-" in s for s in sessions)
    shot(d, "05-memory-panel")
    for _ in range(10):
        items = [li for li in by_css(d, "#memory-list li") if "Chengdu" in li.text]
        if not items:
            break
        n = len(by_css(d, "#memory-list li"))
        items[0].find_elements("css selector", "button.forget")[0].click()
        wait(d, lambda d, n=n: len(by_css(d, "#memory-list li")) != n or not by_css(d, "#memory-list li[data-memory]"), 10)
    assert not any("Chengdu" in li.text for li in by_css(d, "#memory-list li"))
    memories = server["rag"].components.long_term.list(server["rag"].settings.user)
    assert not any("Chengdu" in m.text for m in memories)
    shot(d, "06-forgotten")

    # A new chat empties the transcript; the sessions list brings the conversation back.
    by_css(d, "#new-chat")[0].click()
    wait(d, lambda d: not by_css(d, "#messages .msg"), 10)
    # The list is redrawn for the new chat (which is not in it yet): click once it has been.
    wait(d, lambda d: by_css(d, "#sessions li[data-session]") and not by_css(d, "#sessions li.active"), 10)
    by_css(d, "#sessions li .text")[0].click()
    wait(d, lambda d: len(by_css(d, "#messages .msg")) == 6, 10)
    assert by_css(d, "#messages .msg.user")[1].text == "长城有多长？"


def test_the_page_speaks_simplified_chinese_to_a_chinese_browser(server):
    d = _browser("zh-CN")
    try:
        d.get(server["url"] + "/")
        wait(d, lambda d: by_css(d, "#kb-status dd"))
        assert d.execute_script("return document.documentElement.lang") == "zh-CN"
        assert by_css(d, "#send")[0].text == "提问"
        assert by_css(d, "#new-chat")[0].text == "新对话"
        assert by_css(d, "#question")[0].get_attribute("placeholder").startswith("提个问题")
        bubble, updates = ask(d, "长城是什么？")
        assert updates >= 2 and bubble.find_elements("css selector", ".answer-text")[0].text.strip()
        shot(d, "07-chinese-ui")
    finally:
        d.quit()


def test_the_page_asks_for_an_api_key_when_the_server_needs_one(tmp_path):
    from rag_memory.pipelines.rag import RagPipeline
    from rag_memory.server import ApiKeys, create_app
    from tests.helpers.http_server import uvicorn_server

    rag = RagPipeline(server_settings(tmp_path / "home", generator="extractive"))
    rag.ingest([write_corpus(tmp_path / "docs")])
    key = "erin-key-0123456789abcdef"
    app = create_app(rag, keys=ApiKeys.from_flags([f"{key}=erin"]))
    with uvicorn_server(app) as url:
        d = _browser("en-US")
        try:
            d.get(url + "/")
            wait(d, lambda d: d.execute_script("return document.getElementById('key-dialog').open"), 15)
            shot(d, "08-key-dialog")
            by_css(d, "#key-input")[0].send_keys(key)
            by_css(d, "#key-save")[0].click()
            wait(d, lambda d: by_css(d, "#kb-status dd"), 15)
            bubble, _ = ask(d, "What happens when a file is deleted on re-ingest?")
            assert "re-ingest removes its chunks" in bubble.text
            assert [s.session_id for s in rag.components.memory.sessions("erin")]
        finally:
            d.quit()
