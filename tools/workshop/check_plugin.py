"""What `make check` adds to a run of the learner's tests (pytest -p workshop.check_plugin).

- The official tutorial's browser tests call `webdriver.Chrome()`, which opens a
  window: on a machine without a screen (or as root, or in CI) it cannot start. Here
  such a browser is started headless, with the machine's Chromium and driver, so that
  a learner who wrote what the tutorial says passes.
- With --break-group-send, every channel layer's group_send reaches nobody: a run of
  the learner's own tests that must then fail, to show that they can.
- With --only PATTERN (again for more), only the tests whose function name matches
  one of the fnmatch patterns run (`make check QUICK=1`: the lesson's checkpoints).
- With --progress, each collected test and each finished one is told on stderr, one
  line each (PROGRESS, then JSON), for the checker to show while the tests run.
- With --stop-at PATTERN (again for more), the run ends at the first failing test once
  the output has shown one of these regular expressions: a mistake every later test
  would meet again (a warning counts: a coroutine never awaited). With
  --stop-at-first-failure, at the first failing test: the checker found such a
  mistake before the run.
"""

import fnmatch
import json
import os
import re
import shutil
import sys

BROWSER_NAMES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)
PROGRESS = "@@workshop-check "


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
    parser.addoption(
        "--progress",
        action="store_true",
        help="tell each collected and each finished test on stderr",
    )
    parser.addoption(
        "--stop-at",
        action="append",
        default=[],
        help="end the run at the first failing test once the output shows this"
        " regular expression",
    )
    parser.addoption(
        "--stop-at-first-failure",
        action="store_true",
        help="end the run at the first failing test",
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
    config.pluginmanager.register(
        Progress(
            config.getoption("--progress"),
            config.getoption("--stop-at"),
            config.getoption("--stop-at-first-failure"),
        )
    )


class Progress:
    """Tells how the run goes, and ends it at a mistake every test would meet."""

    def __init__(self, tell: bool, stop_at: list[str], at_first_failure: bool):
        self.tell = tell
        self.stop_at = [re.compile(pattern) for pattern in stop_at]
        self.session = None
        self.outcomes: dict[str, str] = {}
        # The pattern seen, once seen.
        self.mistake = "a mistake found before the run" if at_first_failure else None

    def emit(self, **event):
        if self.tell:
            # Between a test's phases pytest's capture is suspended: this reaches
            # the checker's pipe, not the test's captured output.
            sys.__stderr__.write(PROGRESS + json.dumps(event) + "\n")
            sys.__stderr__.flush()

    def notice(self, text: str):
        for pattern in self.stop_at:
            if self.mistake is None and pattern.search(text):
                self.mistake = pattern.pattern

    def pytest_sessionstart(self, session):
        self.session = session

    def pytest_collection_finish(self, session):
        self.emit(collected=[item.nodeid for item in session.items])

    def pytest_collectreport(self, report):
        if report.failed:
            self.emit(collect_error=report.nodeid)

    def pytest_warning_recorded(self, warning_message):
        self.notice(str(warning_message.message))

    def pytest_runtest_logreport(self, report):
        outcome = self.outcomes.get(report.nodeid, "passed")
        if report.failed:
            outcome = "failed"
            self.notice(
                report.longreprtext + "".join(content for _, content in report.sections)
            )
            if self.mistake and self.session is not None:
                self.session.shouldstop = (
                    f"a mistake every later test would meet ({self.mistake})"
                )
        elif report.skipped and outcome == "passed":
            outcome = "skipped"
        self.outcomes[report.nodeid] = outcome
        if report.when == "teardown":
            self.emit(test=report.nodeid, outcome=self.outcomes.pop(report.nodeid))
            if self.mistake and self.session is not None and self.session.shouldstop:
                self.emit(stopped=self.mistake)


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
