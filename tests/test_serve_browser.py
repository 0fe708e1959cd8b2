"""End to end: ``pconv serve`` driven by a real headless browser (Debian's chromium through
chromedriver and Selenium; ``.ci/run`` installs them).

The test starts the server on a free local port, opens the page, loads a photo, paints
a stroke with mouse events, inpaints with the bundled default model, downloads the
result and checks that it differs from the photo only under the stroke. The browser
may resolve no host but 127.0.0.1. With ``PCONV_SCREENSHOT=PATH`` the page's screenshot
(the README's) is also saved there.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pconv_cli.weights import DEFAULT_WEIGHTS

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs chromium and chromedriver (.ci/run installs them)",
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def server(tmp_path):
    """``pconv serve`` as a user starts it: no --weights, so the bundled default model."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pconv_cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                pytest.fail(f"pconv serve exited: {process.stdout.read()}")
            try:
                if _get(url + "/api/health")["status"] == "ok":
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("pconv serve did not answer within 30 s")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode is not None  # no server left behind


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,860", "--no-first-run", "--no-default-browser-check",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-extensions", "--disable-default-apps", "--metrics-recording-only",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    ):  # fmt: skip
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    try:
        yield driver, downloads
    finally:
        driver.quit()


def _wait(driver, condition, timeout: float, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(condition)
    except Exception:
        status = driver.find_element("id", "status").text
        pytest.fail(f"timed out waiting for {what}; the page says: {status}")


def test_paint_inpaint_download_in_a_real_browser(server, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver, downloads = browser
    photo = tmp_path / "rocket.png"
    Image.open(EXAMPLES / "rocket.jpg").convert("RGB").save(photo)
    original = np.asarray(Image.open(photo))
    height, width = original.shape[:2]

    driver.get(server + "/")
    _wait(driver, lambda d: d.find_element(By.ID, "model").get_attribute("value"), 30, "models")
    assert driver.find_element(By.ID, "model").get_attribute("value") == DEFAULT_WEIGHTS
    picker = driver.find_element(By.ID, "file")
    driver.execute_script("arguments[0].hidden = false", picker)
    picker.send_keys(str(photo))
    driver.execute_script("arguments[0].hidden = true", picker)
    canvas = driver.find_element(By.ID, "mask")
    _wait(driver, lambda d: canvas.is_displayed() and canvas.size["width"] > 0, 30, "the image")

    # a stroke over the left launch tower, in image pixels
    box = driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                "return [r.width, r.height];", canvas)  # fmt: skip
    scale = width / box[0]
    brush = int(driver.find_element(By.ID, "size").get_attribute("value")) * scale
    start, end = (0.30 * width, 0.25 * height), (0.30 * width, 0.80 * height)

    def offset(point):  # selenium offsets are from the element's centre, in CSS pixels
        return round(point[0] / scale - box[0] / 2), round(point[1] / scale - box[1] / 2)

    actions = ActionChains(driver)
    actions.move_to_element_with_offset(canvas, *offset(start)).click_and_hold()
    for t in np.linspace(0, 1, 12)[1:]:
        point = (start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1]))
        actions.move_to_element_with_offset(canvas, *offset(point))
    actions.release().perform()
    inpaint = driver.find_element(By.ID, "inpaint")
    _wait(driver, lambda d: inpaint.is_enabled(), 10, "the Inpaint button")
    inpaint.click()
    _wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state")
          in ("done", "error"), 120, "the result")  # fmt: skip
    status = driver.find_element(By.ID, "status").text
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", status
    screenshot = tmp_path / "serve.png"
    driver.save_screenshot(str(screenshot))
    if os.environ.get("PCONV_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["PCONV_SCREENSHOT"])

    driver.find_element(By.ID, "download").click()
    target = downloads / "rocket_inpainted.png"
    _wait(driver, lambda d: target.is_file() and not list(downloads.glob("*.crdownload")), 30,
          "the download")  # fmt: skip
    result = np.asarray(Image.open(target).convert("RGB"))
    assert result.shape == original.shape
    changed = (result != original).any(axis=2)
    assert changed.sum() > 100, "the stroke was not inpainted"
    # every changed pixel lies under the stroke (its width plus a pixel of anti-aliasing)
    stroke = Image.new("L", (width, height))
    draw = ImageDraw.Draw(stroke)
    reach = brush / 2 + 2
    draw.line([start, end], fill=255, width=round(2 * reach))
    for x, y in (start, end):
        draw.ellipse([x - reach, y - reach, x + reach, y + reach], fill=255)
    allowed = np.asarray(stroke) > 0
    assert not (changed & ~allowed).any(), "pixels outside the stroke changed"
    assert changed.sum() > 0.5 * allowed.sum() * 0.5
