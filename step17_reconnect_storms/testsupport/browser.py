"""A real headless Chromium (or Chrome) driven by Selenium.

Where the browser and its driver are found, in this order:
1. CHROME_BIN and CHROMEDRIVER, when set;
2. chromium / chromium-browser / google-chrome and chromedriver on PATH
   (Debian and Ubuntu: apt install chromium chromium-driver);
3. Selenium Manager, which finds an installed Chrome and downloads a matching
   driver (that needs internet access the first time).

When none works, the browser tests are skipped with a reason that says how to get one.
"""

import json
import os
import re
import shutil
import tempfile
import unittest
from pathlib import Path

# A skip reason starts with "needs <part>:", so that a runner can tell which part
# was missing (a CI run can turn such a skip into a failure).
HOW_TO_GET_CHROMIUM = (
    "needs Chromium: no Chromium/Chrome with a driver found: apt install chromium"
    " chromium-driver | brew install --cask google-chrome | or set CHROME_BIN and"
    " CHROMEDRIVER"
)
BROWSER_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)


def find_browser_binary() -> str | None:
    if os.environ.get("CHROME_BIN"):
        return os.environ["CHROME_BIN"]
    for name in BROWSER_NAMES:
        if path := shutil.which(name):
            return path
    return None


def find_driver_binary() -> str | None:
    return os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")


def chrome_options(user_data_dir: str):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.add_argument("--headless=new")
    options.add_argument("--window-size=1024,768")
    options.add_argument("--disable-gpu")
    options.add_argument("--disable-dev-shm-usage")
    # Chromium's own background traffic (updates, sync, QUIC probes) is noise at
    # best, and a long wait on a machine without internet access.
    options.add_argument("--no-first-run")
    options.add_argument("--disable-background-networking")
    options.add_argument("--disable-component-update")
    options.add_argument("--disable-sync")
    options.add_argument("--disable-quic")
    options.add_argument(f"--user-data-dir={user_data_dir}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Chromium refuses to start its sandbox as root (containers, CI).
        options.add_argument("--no-sandbox")
    # Keep the page's console messages, so that a failing test can save them.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    binary = find_browser_binary()
    if binary:
        options.binary_location = binary
    return options


def make_driver():
    """A new headless browser, or a skip that says how to get one.

    Call driver.quit() when done (it also removes the browser's profile).
    """
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.TemporaryDirectory(prefix="test-chrome-")
    driver_binary = find_driver_binary()
    # With no executable_path, Selenium Manager looks for (or downloads) a driver.
    service = Service(executable_path=driver_binary) if driver_binary else Service()
    try:
        driver = webdriver.Chrome(options=chrome_options(profile.name), service=service)
    except WebDriverException as error:
        profile.cleanup()
        first_line = (error.msg or str(error)).strip().splitlines()[0]
        raise unittest.SkipTest(f"{HOW_TO_GET_CHROMIUM} ({first_line})") from None

    original_quit = driver.quit

    def quit_and_clean_up():
        try:
            original_quit()
        finally:
            profile.cleanup()

    driver.quit = quit_and_clean_up
    return driver


def save_failure_artefacts(driver, directory, test_name: str) -> str:
    """Save a screenshot of every open window and the browser's console log.

    Returns the folder they were saved in, for the failure message.
    """
    folder = Path(directory) / re.sub(r"[^\w.-]+", "_", test_name)
    folder.mkdir(parents=True, exist_ok=True)
    current = driver.current_window_handle
    for number, handle in enumerate(driver.window_handles, start=1):
        driver.switch_to.window(handle)
        driver.save_screenshot(str(folder / f"window-{number}.png"))
    driver.switch_to.window(current)
    try:
        entries = driver.get_log("browser")
    except Exception as error:  # not every driver keeps a console log
        entries = [{"level": "INFO", "message": f"(no console log: {error})"}]
    with open(folder / "console.log", "w", encoding="utf-8") as log:
        for entry in entries:
            log.write(json.dumps(entry) + "\n")
        if not entries:
            log.write("(the page logged nothing to the console)\n")
    return str(folder)
