"""The playground page (GET /), in a real headless browser: Debian's chromium and chromium-driver, driven by Selenium.

For every task: the page loads and shows the task's input, an input given as a learner would (typed, drawn,
uploaded) gets the answer POST /predict gives for the same request, and a bad input shows the server's message.
Set PLAYGROUND_SCREENSHOTS to a folder to keep a screenshot of each task's page there (the README's pictures).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest
from conftest import QUICKEST, TASKS, LiveServer
from PIL import Image

from {{ cookiecutter.__package }}.serve.app import create_app
from {{ cookiecutter.__package }}.serve.settings import ServeSettings

webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium is a dev dependency: pip install -e '.[dev]'")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import {% if cookiecutter.include_gan == "yes" %}Select, {% endif %}WebDriverWait  # noqa: E402

# Debian's and Ubuntu's chromium, or Google Chrome where that is what the machine has (GitHub's runners).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,  # a browser
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER), reason="needs a browser and its driver: apt install chromium chromium-driver"
    ),
]
# Headless, and quiet on a machine without network: no background connections, no first-run pages.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=900,1100",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def open_page(browser, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


def submit(browser) -> dict:
    """Press the button; the request the page sent and the answer it got, as the page shows them."""
    browser.execute_script("delete document.body.dataset.answered")
    browser.find_element(By.ID, "send").click()
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-answered"))
    shown = {name: browser.find_element(By.ID, name).get_attribute("textContent") for name in ("request", "answer")}
    return {name: json.loads(text) for name, text in shown.items()}


def replace_text(browser, element_id: str, text: str) -> None:
    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def upload(browser, path: Path) -> None:
    """Choose a file in the page's file field, and wait until the page has read it."""
    before = browser.find_element(By.ID, "preview").get_attribute("src")
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, 10).until(lambda b: b.find_element(By.ID, "preview").get_attribute("src") != before)


def give_input(browser, kind: str, tmp_path: Path) -> None:
    """Give the page an input as a learner would, for each kind of input it shows."""
    if kind == "number":
        replace_text(browser, "x", "1.5")
    elif kind == "pair":
        replace_text(browser, "a", "1")
        replace_text(browser, "b", "0")
    elif kind == "digit":  # a stroke down the middle: a "1"
        canvas = browser.find_element(By.ID, "canvas")
        ActionChains(browser).move_to_element_with_offset(canvas, 0, -90).click_and_hold().move_by_offset(
            0, 90
        ).move_by_offset(0, 90).release().perform()
    elif kind == "image":
        photo = tmp_path / "photo.png"
        Image.new("RGB", (80, 60), (200, 40, 40)).save(photo)
        upload(browser, photo)
    elif kind == "text":
        replace_text(browser, "text", "A warm, funny and beautifully acted film.")
    elif kind == "generate":
        replace_text(browser, "seed", "3")
        replace_text(browser, "count", "2")
    else:
        raise AssertionError(f"no playground input for {kind!r}")


def give_bad_input(browser, kind: str, tmp_path: Path) -> bool:
    """A bad input of that kind, or False where the page cannot make one (any drawing is a valid image)."""
    if kind in ("number", "pair"):
        replace_text(browser, "x" if kind == "number" else "a", "two")
    elif kind == "image":
        not_an_image = tmp_path / "notes.png"
        not_an_image.write_text("not an image")
        upload(browser, not_an_image)
    elif kind == "text":
        replace_text(browser, "text", "   ")
    elif kind == "generate":
        replace_text(browser, "count", "0")
    else:
        return False
    return True


@pytest.mark.parametrize("task", TASKS)
def test_the_playground_answers_what_the_api_answers_and_shows_its_errors(browser, trained, task, tmp_path):
    app = create_app(ServeSettings(model=trained(task)))
    with LiveServer(app) as server:
        open_page(browser, server.url)
        assert task in browser.title and browser.find_element(By.LINK_TEXT, "The API's documentation (/docs)")
        kind = httpx.get(f"{server.url}/metadata").json()["playground"]

        give_input(browser, kind, tmp_path)
        shown = submit(browser)
        direct = httpx.post(f"{server.url}/predict", json=shown["request"])
        assert direct.status_code == 200 and shown["answer"] == direct.json()
        shown_rows = browser.find_elements(By.CSS_SELECTOR, "#result > *")  # a label, a number or an image per input
        assert len(shown_rows) == len(direct.json()["predictions"]), "the answer is shown, not only its JSON"
        if folder := os.environ.get("PLAYGROUND_SCREENSHOTS"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(Path(folder) / f"{task}.png"))

        if give_bad_input(browser, kind, tmp_path):
            shown = submit(browser)
            direct = httpx.post(f"{server.url}/predict", json=shown["request"])
            assert direct.status_code == 422 and shown["answer"] == direct.json()
            assert direct.json()["error"] in browser.find_element(By.ID, "error").text


def test_the_playground_asks_for_the_api_key_when_the_server_has_one(browser, trained, tmp_path):
    key = {"X-API-Key": "s3cret"}
    with LiveServer(create_app(ServeSettings(model=trained(QUICKEST), api_key=key["X-API-Key"]))) as server:
        browser.get(server.url)
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "key-row").is_displayed())
        assert "API key" in browser.find_element(By.ID, "error").text
        replace_text(browser, "key", key["X-API-Key"])
        browser.find_element(By.ID, "connect").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
        give_input(browser, httpx.get(f"{server.url}/metadata", headers=key).json()["playground"], tmp_path)
        shown = submit(browser)
        direct = httpx.post(f"{server.url}/predict", json=shown["request"], headers=key)
    assert direct.status_code == 200 and shown["answer"] == direct.json()
{%- if cookiecutter.include_gan == "yes" %}


def test_a_conditional_gans_playground_draws_the_digit_picked(browser, trained, tmp_path):
    with LiveServer(create_app(ServeSettings(model=trained("gan", "--model.conditional", "true")))) as server:
        open_page(browser, server.url)
        picker = Select(browser.find_element(By.ID, "digit"))
        assert [option.text for option in picker.options] == ["every class in turn", *map(str, range(10))]
        give_input(browser, "generate", tmp_path)
        picker.select_by_visible_text("7")
        shown = submit(browser)
        assert shown["request"] == {"seed": 3, "count": 2, "digit": 7}
        direct = httpx.post(f"{server.url}/predict", json=shown["request"])
        assert direct.status_code == 200 and shown["answer"] == direct.json()
        assert len(browser.find_elements(By.CSS_SELECTOR, "#result > img")) == 2
{%- endif %}
