"""`stylemri explore` in a real browser: Debian's chromium + chromium-driver, driven by selenium (headless).

The page is served by the real command (a subprocess, `--data` on); the test moves the class-direction and
truncation sliders with the keyboard, as a user would, and checks the pixels change, then uploads a slice
and checks its projection appears. In CI (`CI=true`; `.ci/run` sets it and installs chromium when it is
missing) a missing browser or selenium is a failure with instructions; elsewhere (`make test` on a fresh
machine) the test is skipped with that reason shown in pytest's summary. To run it locally: install Debian's
chromium and chromium-driver, then `CI=true .venv/bin/python -m pytest tests/test_explore_browser.py`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlparse

import pytest

from test_explore_api import start_server, stop, trained

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
DRIVER = ("chromedriver", "chromium-driver")
PIXELS = """
const img = arguments[0];
if (!img.complete || !img.naturalWidth) return null;
const c = document.createElement("canvas");
c.width = img.naturalWidth; c.height = img.naturalHeight;
const g = c.getContext("2d");
g.drawImage(img, 0, 0);
return Array.from(g.getImageData(0, 0, c.width, c.height).data).join(",");
"""


def in_ci() -> bool:
    """CI=true (or 1/yes), as CI services and `.ci/run` set it: there the browser test is mandatory."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing(reason: str) -> None:
    """A missing browser fails in CI and skips, with the reason in the summary, everywhere else."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(f"{reason}; skipped outside CI (CI=true makes it mandatory)")


def find(names: tuple[str, ...]) -> str | None:
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing("selenium is not installed: pip install -e '.[explore]' (make install does)")
    chrome, driver_path = find(CHROMIUM), find(DRIVER)
    if chrome is None or driver_path is None:
        missing("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver (.ci/run installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,1800", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    found = trained(tmp_path_factory.mktemp("explore-browser"))
    proc, url = start_server(str(found["cond"]), "--port", "0", "--device", "cpu", "--data", str(found["data"]),
                             "--cache-dir", str(found["cache"]))
    yield {"url": url, "data": found["data"]}
    rc, out, err = stop(proc)
    assert rc == 0 and "Traceback" not in err, err


def wait(driver, condition, timeout: float = 90, what: str = ""):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page re-renders the grid when a setting changes: an element found in one poll can be replaced before
    # the next call on it; that poll is "not yet", the condition is tried again.
    return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
                         ).until(lambda d: condition(d), message=what)


def pixels(driver, element_id: str) -> str:
    return driver.execute_script(PIXELS, driver.find_element("id", element_id))


def loaded_with(driver, element_id: str, fragment: str) -> str:
    """Wait until the image has been replaced by the answer to a URL containing `fragment`; its pixels."""
    def ready(d):
        el = d.find_element("id", element_id)
        return fragment in (el.get_attribute("data-url") or "") and d.execute_script(PIXELS, el)

    return wait(driver, ready, what=f"#{element_id} never showed {fragment}")


def press(driver, element_id: str, key: str, times: int) -> None:
    el = driver.find_element("id", element_id)
    driver.execute_script("arguments[0].focus()", el)  # focus without clicking (a click moves the thumb)
    for _ in range(times):
        el.send_keys(key)


def test_page_in_chromium(browser, server, tmp_path):
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(server["url"])
    wait(d, lambda d: d.find_element("tag name", "body").get_attribute("data-ready") == "1", what="page not ready")
    assert "AD, NC" in d.find_element("id", "model-info").text

    tiles = d.find_elements("css selector", "#grid img.tile")
    assert len(tiles) == 2 * 8
    wait(d, lambda d: all(t.get_attribute("data-loaded") for t in d.find_elements("css selector", "#grid img.tile")),
         what="grid did not load")

    # class direction: t from 0 to 0.5 with the arrow keys; the slice and its difference map change
    walk0 = loaded_with(d, "walk-img", "t=0")
    diff0 = loaded_with(d, "walk-diff", "t=0")
    press(d, "walk-t", Keys.ARROW_RIGHT, 10)
    assert d.find_element("id", "walk-t-value").text == "0.50"
    assert loaded_with(d, "walk-img", "t=0.5") != walk0
    assert loaded_with(d, "walk-diff", "t=0.5") != diff0

    # truncation: psi from 1 to 0.5; the grid's slices change
    before = pixels(d, "current-img")
    first = d.find_element("css selector", "#grid img.tile").get_attribute("data-url")
    assert "trunc=1" in first
    press(d, "trunc", Keys.ARROW_LEFT, 10)
    assert d.find_element("id", "trunc-value").text == "0.50"
    wait(d, lambda d: "trunc=0.5" in (d.find_element("css selector", "#grid img.tile").get_attribute("data-url") or ""),
         what="grid did not follow the truncation slider")
    tile = d.find_element("css selector", "#grid img.tile")
    wait(d, lambda d: d.execute_script(PIXELS, tile), what="tile not drawn")
    d.find_element("css selector", "#grid img.tile").click()  # select seed 0 of the first class at psi 0.5
    assert loaded_with(d, "current-img", "trunc=0.5") != before

    # nearest training image panel (--data): patient ID and the real-to-real scale
    wait(d, lambda d: "patient" in d.find_element("id", "nearest-caption").text, what="no nearest image")
    assert "real-to-real median" in d.find_element("id", "nearest-caption").text

    # upload a slice and see its projection
    d.find_element("id", "upload-steps").clear()
    d.find_element("id", "upload-steps").send_keys("5")
    d.find_element("id", "upload-file").send_keys(str(server["data"] / "AD" / "100_2.png"))
    d.find_element("id", "project-btn").click()
    wait(d, lambda d: "MS-SSIM" in d.find_element("id", "project-status").text, what="projection did not finish")
    target = loaded_with(d, "proj-target", "show=target")
    recon = loaded_with(d, "proj-recon", "id=")
    assert target and recon and len(set(recon.split(","))) > 2  # a drawn image, not a blank
    press(d, "proj-t", Keys.ARROW_RIGHT, 20)
    assert loaded_with(d, "proj-edit", "t=1") != recon

    # everything came from this server, and the browser reported no error (CSP violations included)
    origin = "{0.scheme}://{0.netloc}".format(urlparse(server["url"]))
    resources = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and all(r.startswith(origin) for r in resources), resources
    severe = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe
    d.save_screenshot(str(tmp_path / "explore.png"))


@pytest.mark.parametrize("ci,outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_missing_browser_skips_outside_ci_and_fails_in_ci(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="needs chromium"):
        missing("needs chromium")
