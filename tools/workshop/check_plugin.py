"""What `make check` adds to a run of the learner's tests (pytest -p workshop.check_plugin).

- The official tutorial's browser tests call `webdriver.Chrome()`, which opens a
  window: on a machine without a screen (or as root, or in CI) it cannot start. Here
  such a browser is started headless, with the machine's Chromium and driver, so that
  a learner who wrote what the tutorial says passes.
- With --break-group-send, every channel layer's group_send reaches nobody: a run of
  the learner's own tests that must then fail, to show that they can.
- With --only PATTERN (again for more), only the tests whose function name matches
  one of the fnmatch patterns run (`make check QUICK=1`: the lesson's checkpoints).
"""

import fnmatch
import os
import shutil

BROWSER_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)


def pytest_addoption(parser):
    parser.addoption(
        "--break-group-send",
        action="store_true",
        help="make every channel layer's group_send reach nobody",
    )
    parser.addoption(
        "--only",
        action="append",
        default=[],
        help="run only the tests whose function name matches this fnmatch pattern",
    )


def pytest_collection_modifyitems(config, items):
    patterns = config.getoption("--only")
    if not patterns:
        return
    kept, dropped = [], []
    for item in items:
        name = getattr(item, "originalname", None) or item.name.split("[", 1)[0]
        matched = any(fnmatch.fnmatchcase(name, p) for p in patterns)
        (kept if matched else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_configure(config):
    start_the_tutorials_browser_headless()
    if config.getoption("--break-group-send"):
        break_group_send()


def start_the_tutorials_browser_headless():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.chrome.webdriver import WebDriver
    except ImportError:
        return
    original_init = WebDriver.__init__

    def headless_init(self, options=None, service=None, keep_alive=True):
        options = options or webdriver.ChromeOptions()
        if not any(argument.startswith("--headless") for argument in options.arguments):
            options.add_argument("--headless=new")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            options.add_argument("--no-sandbox")
        options.add_argument("--disable-dev-shm-usage")
        browser = os.environ.get("CHROME_BIN") or next(
            filter(None, map(shutil.which, BROWSER_NAMES)), None
        )
        if browser and not options.binary_location:
            options.binary_location = browser
        driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
        if service is None and driver:
            service = Service(executable_path=driver)
        original_init(self, options=options, service=service, keep_alive=keep_alive)

    WebDriver.__init__ = headless_init


def break_group_send():
    async def reach_nobody(self, group, message):
        return None

    from channels.layers import InMemoryChannelLayer

    InMemoryChannelLayer.group_send = reach_nobody
    try:
        from channels_redis.core import RedisChannelLayer
        from channels_redis.pubsub import RedisPubSubLoopLayer

        RedisChannelLayer.group_send = reach_nobody
        RedisPubSubLoopLayer.group_send = reach_nobody
    except ImportError:
        pass
