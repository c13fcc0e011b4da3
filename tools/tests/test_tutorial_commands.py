"""The tutorial's own commands work in the steps, exactly as it gives them."""

import re
import shutil
import subprocess
import sys

import pytest

from workshop.requirements import part_missing
from workshop.step_support import load_testsupport
from workshop.steps import project_files, steps_with

STEPS_WITH_BROWSER_TESTS = steps_with("chat/tests.py")


@pytest.mark.parametrize("step", STEPS_WITH_BROWSER_TESTS, ids=lambda step: step.name)
def test_manage_py_test_chat_tests_runs_the_browser_tests(step, tmp_path):
    # Tutorial part 4: "python manage.py test chat.tests", with Django's test runner
    # instead of pytest (and so without the workshop's pytest plugin). In a copy of
    # the step (it stands on its own), so that its test database is this run's.
    folder = tmp_path / step.name
    for name in project_files(step.path):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(step.path / name, folder / name)
    result = subprocess.run(
        [sys.executable, "manage.py", "test", "chat.tests", "--noinput"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr

    assert result.returncode == 0, output[-4000:]
    if "skipped=" in output:  # no browser here, and none required: say so as it does
        browser = load_testsupport("browser", step)
        part_missing(browser.HOW_TO_GET_CHROMIUM, "REQUIRE_BROWSER")
    ran = re.search(r"^Ran (\d+) tests? in", output, re.MULTILINE)
    assert ran and int(ran.group(1)) >= 2, output[-4000:]
    assert "\nOK\n" in output, output[-4000:]
    # The test database goes, and with it SQLite's -wal and -shm files: a stale
    # log next to the next run's new database is how SQLite files get corrupted.
    left_behind = sorted(p.name for p in folder.glob("test_db.sqlite3*"))
    assert left_behind == [], f"left behind in {step.name}: {left_behind}"
