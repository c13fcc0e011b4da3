"""A real headless Chromium (or Chrome) driven by Selenium.

Where to find the browser and its driver, in this order:
1. CHROME_BIN and CHROMEDRIVER, when set;
2. chromium / chromium-browser / google-chrome and chromedriver on PATH
   (Debian and Ubuntu: apt install chromium chromium-driver);
3. Selenium Manager, which finds an installed Chrome and downloads a matching
   driver (needs network access the first time).

When none works the tests that need a browser are skipped with a one-line reason,
or fail when REQUIRE_BROWSER=1.
"""

import os
import shutil
import tempfile

from workshop.requirements import part_missing

HOW_TO_GET_CHROMIUM = (
    "no Chromium/Chrome with a driver found: apt install chromium chromium-driver"
    " | brew install --cask google-chrome | or set CHROME_BIN and CHROMEDRIVER"
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
    # Keep the page's console messages, so a failing test can save them.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    binary = find_browser_binary()
    if binary:
        options.binary_location = binary
    return options


def make_driver():
    """A new headless browser. Call driver.quit() when done (it also removes its profile)."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:  # pragma: no cover - selenium is in requirements.txt
        part_missing(
            "selenium is not installed: pip install -r requirements.txt",
            "REQUIRE_BROWSER",
        )

    profile = tempfile.TemporaryDirectory(prefix="workshop-chrome-")
    driver_binary = find_driver_binary()
    # With no executable_path, Selenium Manager looks for (or downloads) a driver.
    service = Service(executable_path=driver_binary) if driver_binary else Service()
    try:
        driver = webdriver.Chrome(options=chrome_options(profile.name), service=service)
    except WebDriverException as error:
        profile.cleanup()
        first_line = (error.msg or str(error)).strip().splitlines()[0]
        part_missing(f"{HOW_TO_GET_CHROMIUM} ({first_line})", "REQUIRE_BROWSER")

    original_quit = driver.quit

    def quit_and_clean_up():
        try:
            original_quit()
        finally:
            profile.cleanup()

    driver.quit = quit_and_clean_up
    return driver
