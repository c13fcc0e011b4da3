"""What the workshop adds to a step's pytest run, from outside the step.

The runner (`make test`, `python workshop.py test`) loads it with
`-p workshop.pytest_plugin`; no file in a step refers to it, so a step folder
copied anywhere runs its tests without it.

A step's test support skips a test that needs a part this machine lacks, with a
reason that starts "needs <part>:" ("needs Redis: ...", "needs Chromium: ...").
With that part's REQUIRE_* variable set to 1, as CI sets them, this plugin turns such
a skip into a failure: in CI a missing part must never pass unnoticed.
"""

import os
import re

import pytest

REQUIRED_PARTS = {
    "Redis": "REQUIRE_REDIS",
    "Chromium": "REQUIRE_BROWSER",
    "PostgreSQL": "REQUIRE_POSTGRES",
    "nginx": "REQUIRE_NGINX",
}
NEEDS = re.compile(r"needs (\w+):")


def required_part(reason: str) -> str | None:
    """The REQUIRE_* variable that makes this skip a failure, if it is set to 1."""
    found = NEEDS.search(reason)
    if not found:
        return None
    variable = REQUIRED_PARTS.get(found.group(1))
    return variable if variable and os.environ.get(variable) == "1" else None


def skip_reason(report) -> str:
    if isinstance(report.longrepr, tuple):
        return report.longrepr[2]
    return str(report.longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped:
        return
    reason = skip_reason(report)
    variable = required_part(reason)
    if variable:
        report.outcome = "failed"
        report.longrepr = (
            f"{reason}\n({variable}=1: a missing part is a failure, not a skip)"
        )


def pytest_report_header(config):
    wanted = [name for name in REQUIRED_PARTS.values() if os.environ.get(name) == "1"]
    if wanted:
        return "missing parts fail instead of skipping: " + ", ".join(wanted)
    return (
        "missing parts (redis-server, Chromium, ...) skip their tests;"
        " REQUIRE_REDIS=1, REQUIRE_BROWSER=1, ... make that a failure"
    )
