"""Do the workshop yourself: your own project in workspace/, checked against a step.

    python workshop.py start 3     workspace/ from the end of step 2, to write step 3
    python workshop.py check       step 3's checkpoints against workspace/, in plain words
    python workshop.py compare     workspace/'s lesson files against the reference step 3
    python workshop.py run         run workspace/ on http://127.0.0.1:8000/chat/

workspace/ is ignored by git and by every other workshop command; it remembers in
workspace/.workshop.json which step it works towards and whether its check passed.
What each lesson checks is data: workshop.checkpoints.LESSONS.
"""

import contextlib
import difflib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from workshop.checkpoints import (
    ASYNCHRONOUS_CONSUMER,
    MISTAKES,
    OWN_TESTS_NOTICE,
    OWN_TESTS_PASS,
    TEST_DATABASE_FILE,
    TESTS,
    Checkpoint,
    Lesson,
    consumer_is_asynchronous,
    found_mistake,
    lesson_checks,
    matches,
    plain_words,
    probe_problems,
)
from workshop.file_kinds import is_code, is_test_file
from workshop.lessons import read_manifest
from workshop.ports import port_in_use
from workshop.steps import (
    ROOT,
    Step,
    all_steps,
    find_step,
    previous_step,
    project_files,
)

# WORKSHOP_WORKSPACE names another folder (the checker's own tests use one).
WORKSPACE = Path(os.environ.get("WORKSHOP_WORKSPACE") or ROOT / "workspace")
STATE = ".workshop.json"
# The step's tests save screenshots and console logs of failing browser tests here,
# in the copy the check runs in; they are kept next to workspace/.
TEST_ARTIFACTS = "test-artifacts"
# What `make start` says to run first in a lesson that begins in an empty folder.
BEGIN_IN_AN_EMPTY_FOLDER = (
    "python workshop.py admin startproject mysite .",
    "python workshop.py manage startapp chat",
)


class WorkspaceError(Exception):
    """A mistake in using workspace/; the message says what to do."""


def both(make: str, python: str) -> str:
    return f"{make}   (without make: {python})"


def read_state(folder: Path | None = None) -> dict:
    try:
        return json.loads(((folder or WORKSPACE) / STATE).read_text())
    except (OSError, ValueError):
        return {}


def write_state(state: dict, folder: Path | None = None) -> None:
    ((folder or WORKSPACE) / STATE).write_text(json.dumps(state) + "\n")


def state_step(state: dict) -> Step | None:
    """The step workspace/ works towards: named by its folder (or, in a workspace
    made before, by its number)."""
    wanted = state.get("step")
    return next(
        (s for s in all_steps() if wanted in (s.name, s.number)),
        None,
    )


def artifacts_folder() -> Path:
    return WORKSPACE.parent / "build" / "check-artifacts"


def shown(path: Path) -> str:
    """A path as a learner types it: relative to the workshop, when it is inside."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def lesson_info(step: Step) -> dict[str, str]:
    lesson = read_manifest().get(step.name)
    return lesson.settings if lesson else {}


def lesson_files(step: Step) -> set[str]:
    lesson = read_manifest().get(step.name)
    return lesson.files if lesson else set()


def written_by_the_learner(step: Step) -> list[str]:
    """The lesson's files a learner writes: its code and pages, and the tests of a
    lesson that teaches writing them (not its README, migrations or test support)."""
    own_tests = set(lesson_checks(step.name).own_tests)
    return sorted(
        name for name in lesson_files(step) if is_code(name) or name in own_tests
    )


# --- make start -------------------------------------------------------------------------


def start(number: str, force: bool) -> int:
    step = find_step(number)
    lesson = lesson_checks(step.name)
    before = None if lesson.starts_empty else previous_step(step)
    state = read_state()
    current = state_step(state)
    if WORKSPACE.exists() and not force:
        if current == step:
            print(f"workspace/ already works towards step {step.number}: carrying on.")
            return print_next(step)
        if before and current == before and state.get("passed"):
            write_state({"step": step.name, "passed": False})
            print(
                f"You finished step {before.number} in workspace/: step {step.number}"
                " carries on from your own code."
            )
            return print_next(step)
        raise WorkspaceError(
            f"workspace/ {what_workspace_is(state, current)}, so it is not the end of"
            f" step {before.number if before else 0}. Nothing was changed.\n"
            f"  To finish it first:   {both('make check', 'python workshop.py check')}\n"
            f"  To start step {step.number} afresh from the reference step"
            f" {before.number if before else ''} (your folder is kept, renamed):\n"
            f"    {both(f'make start STEP={step.number} FORCE=1', f'python workshop.py start {step.number} --force')}"
        )
    if WORKSPACE.exists():
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = WORKSPACE.with_name(f"{WORKSPACE.name}.before-{stamp}")
        WORKSPACE.rename(kept)
        print(f"Your previous workspace/ is kept as {kept.name}/.")
    WORKSPACE.mkdir()
    if before:
        for name in project_files(before.path):
            if name == "README.md":
                continue
            target = WORKSPACE / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(before.path / name, target)
        print(
            f"Created workspace/: a copy of the end of step {before.number} ({before.name})."
        )
    else:
        print(
            f"Created workspace/, empty: step {step.number} starts from startproject."
        )
    write_state({"step": step.name, "passed": False})
    return print_next(step)


def what_workspace_is(state: dict, current: Step | None) -> str:
    if current is None:
        return "is not a workshop folder"
    if state.get("passed"):
        return f"holds your step {current.number}, whose check has passed"
    if state.get("quick_passed"):
        return (
            f"works towards step {current.number}; its quick check (QUICK=1) has"
            " passed, but not yet the full check"
        )
    return f"works towards step {current.number}, and its check has not passed yet"


def print_next(step: Step) -> int:
    info = lesson_info(step)
    files = written_by_the_learner(step)
    print(f"\nStep {step.number}: {info.get('title', step.name)}")
    print(f"  Follow:    {step.name}/README.md")
    print(f"  Tutorial:  {info.get('tutorial', 'beyond the official tutorial')}")
    if lesson_checks(step.name).starts_empty:
        print("  Begin:     in workspace/, as the tutorial's part 1 says:")
        for command in BEGIN_IN_AN_EMPTY_FOLDER:
            print(f"               {command}")
    if files:
        print(f"  Write:     {', '.join(f'workspace/{name}' for name in files)}")
    print("Then:")
    print(
        f"  {both('make check', 'python workshop.py check')}: step {step.number}'s checkpoints"
    )
    print(
        f"  {both('make run', 'python workshop.py run')}: your project on http://127.0.0.1:8000/chat/"
    )
    print(
        f"  {both('make compare', 'python workshop.py compare')}: yours against {step.name}"
    )
    return 0


def target_step(number: str | None) -> Step:
    if number:
        return find_step(number)
    current = state_step(read_state())
    if not WORKSPACE.exists() or current is None:
        raise WorkspaceError(
            "There is no workspace/ yet. Start a step first, for example:\n"
            f"  {both('make start STEP=2', 'python workshop.py start 2')}"
        )
    return current


# --- make check: running the tests ------------------------------------------------------

# Run inside the checked project: what its settings and code say, as JSON.
PROBE = r"""
import inspect, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
result = {}
try:
    import django
    django.setup()
    from django.conf import settings
    result["installed_apps"] = list(settings.INSTALLED_APPS)
    result["asgi_application"] = getattr(settings, "ASGI_APPLICATION", None)
    default = getattr(settings, "CHANNEL_LAYERS", {}).get("default", {})
    result["layer_backend"] = default.get("BACKEND")
    result["layer_hosts"] = [
        host.get("address") if isinstance(host, dict) else host
        for host in default.get("CONFIG", {}).get("hosts", [])
    ]
    result["test_database"] = str(settings.DATABASES["default"].get("TEST", {}).get("NAME") or "")
    from mysite.asgi import application
    result["protocols"] = sorted(getattr(application, "application_mapping", {"http": 0}))
    if os.path.exists(os.path.join("chat", "consumers.py")):
        with open(os.path.join("chat", "consumers.py"), encoding="utf-8") as source:
            result["consumer_source"] = source.read()
        from chat import consumers
        consumer = getattr(consumers, "ChatConsumer", None)
        if consumer is not None:
            result["consumer_bases"] = [c.__name__ for c in consumer.__mro__]
            result["handlers_not_coroutines"] = [
                name for name in ("connect", "disconnect", "receive", "chat_message")
                if name in vars(consumer)
                and not inspect.iscoroutinefunction(vars(consumer)[name])
            ]
except Exception as error:
    result["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
print(json.dumps(result, default=str))
"""


def probe(folder: Path) -> dict:
    env = {**os.environ, "REDIS_URL": ""}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=folder, capture_output=True, text=True,
        env=env, timeout=120,
    )  # fmt: skip
    try:
        return json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": last}


def copy_for_check(workspace: Path, step: Step, lesson: Lesson, scratch: Path):
    """The learner's project, with the step's tests and test support laid over it
    (but for the tests the lesson has the learner write: theirs are checked)."""
    for name in project_files(workspace):
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workspace / name, target)
    for name in step.files():
        if not is_test_file(name) or name in lesson.own_tests:
            continue
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(step.path / name, target)


@contextlib.contextmanager
def redis_for_tutorial_settings(found: dict):
    """The tutorial's settings use Redis on 127.0.0.1:6379: start one there for the
    check if nothing listens and redis-server is installed."""
    hosts = [str(host) for host in found.get("layer_hosts", [])]
    wants_6379 = any("6379" in host for host in hosts)
    executable = shutil.which("redis-server")
    if not wants_6379 or port_in_use(6379) or not executable:
        yield
        return
    from workshop.redis_process import RedisServer

    print("(Your settings use Redis on port 6379: starting one there for the check.)")
    server = RedisServer(executable, port=6379).start()
    try:
        yield
    finally:
        server.close()


@dataclass
class Result:
    outcome: str  # passed | failed | skipped | not run
    words: str = ""  # the failure's (or the skip's) own words: its first line
    text: str = ""  # the failure's whole report


@dataclass
class ImportFailure:
    file: str
    words: str  # ModuleNotFoundError: No module named 'chat.models'
    where: str  # chat/test_consumers.py, line 21: from chat.models import Message


@dataclass
class TestRun:
    results: dict[str, Result] = field(default_factory=dict)  # by test name
    import_failures: list[ImportFailure] = field(default_factory=list)
    output: str = ""
    stopped_at: str | None = None  # the fatal mistake's pattern, if it stopped


def test_file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def test_name(nodeid: str) -> str:
    """The test's name and parameters, as the JUnit report names it. A parameter may
    hold "::" (the address http://[::1]), so the path ends at the last "::" before
    the parameters."""
    path_and_name, bracket, parameters = nodeid.partition("[")
    return path_and_name.rsplit("::", 1)[-1] + bracket + parameters


def first_line(text: str, limit: int = 200) -> str:
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


class ProgressLines:
    """A mark per test as it ends (. passed, F failed, s skipped), with the count at
    the end of each row, and a line for each test file once its last test has
    ended: the learner sees the check move, and the checklist after it stays short."""

    ROW = 40
    MARKS = {"passed": ".", "failed": "F", "skipped": "s"}

    def __init__(self):
        self.started = time.monotonic()
        self.expected: dict[str, int] = {}
        self.counts: dict[str, dict[str, int]] = {}
        self.width = 0
        self.done = 0
        self.in_row = 0
        self.import_failed = False

    def event(self, event: dict) -> None:
        if "collected" in event:
            for nodeid in event["collected"]:
                file = test_file(nodeid)
                self.expected[file] = self.expected.get(file, 0) + 1
            self.width = max(map(len, self.expected), default=0)
            if self.import_failed:
                say("  No test runs while a test file cannot be imported.")
            else:
                tests, files = len(event["collected"]), len(self.expected)
                say(f"  {counted(tests, 'test')} in {counted(files, 'file')}:")
        elif "collect_error" in event:
            self.import_failed = True
            say(f"  {event['collect_error']}: could not be imported")
        elif "test" in event:
            self.test_ended(test_file(event["test"]), event["outcome"])
        elif "stopped" in event:
            self.end_row()
            for file in self.counts:
                if sum(self.counts[file].values()) < self.expected.get(file, 0):
                    self.file_line(file, ", then stopped")
            say("  Stopped: every later test would meet the same mistake.")

    def test_ended(self, file: str, outcome: str) -> None:
        counts = self.counts.setdefault(file, {})
        counts[outcome] = counts.get(outcome, 0) + 1
        self.done += 1
        say(("  " if not self.in_row else "") + self.MARKS[outcome], end="")
        self.in_row += 1
        if self.in_row == self.ROW:
            self.end_row()
        if sum(counts.values()) == self.expected.get(file):
            self.end_row()
            self.file_line(file)

    def end_row(self) -> None:
        if self.in_row:
            total = sum(self.expected.values())
            say(" " * (self.ROW - self.in_row) + f"  {self.done} of {total}")
            self.in_row = 0

    def file_line(self, file: str, more: str = "") -> None:
        counts = self.counts[file]
        said = ", ".join(
            f"{counts[o]} {o}" for o in ("passed", "failed", "skipped") if counts.get(o)
        )
        seconds = time.monotonic() - self.started
        say(f"  {file:<{self.width}}  {said}{more}  ({seconds:.0f}s)")

    def finish(self) -> None:
        self.end_row()


def say(text: str, end: str = "\n") -> None:
    print(text, end=end, flush=True)


def counted(number: int, thing: str) -> str:
    return f"{number} {thing}" + ("" if number == 1 else "s")


def run_tests(
    folder: Path, arguments: list[str], label: str, stop_at_first_failure: bool = False
) -> TestRun:
    """pytest in the checked copy, telling its progress as it goes; it stops at a
    mistake every later test would meet (at the first failure, when the checker
    knows of one before the run)."""
    from workshop.check_plugin import PROGRESS
    from workshop.testrun import environment

    junit = folder.parent / f"results-{time.monotonic_ns()}.xml"
    stop_at = [f"--stop-at={m.pattern}" for m in MISTAKES if m.fatal]
    if stop_at_first_failure:
        stop_at.append("--stop-at-first-failure")
    command = [
        sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
        "-p", "workshop.pytest_plugin", "-p", "workshop.check_plugin",
        "--progress", *stop_at, f"--junitxml={junit}", *arguments,
    ]  # fmt: skip
    env = {**environment(), "REDIS_URL": ""}
    progress = ProgressLines()
    say(f"Running {label} ...")
    run = TestRun()
    collected: list[str] = []
    errors: list[str] = []

    def read_progress(stream):
        for line in stream:
            if line.startswith(PROGRESS):
                event = json.loads(line[len(PROGRESS) :])
                collected.extend(event.get("collected", []))
                if event.get("stopped"):
                    run.stopped_at = event["stopped"]
                progress.event(event)
            else:
                errors.append(line)

    process = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, encoding="utf-8", errors="replace",
    )  # fmt: skip
    reader = threading.Thread(target=read_progress, args=(process.stderr,))
    reader.start()
    try:
        output = process.stdout.read()
        process.wait()
    finally:
        if process.poll() is None:  # Ctrl+C: pytest's fixtures stop what they started
            if os.name == "posix":  # (a Windows console's Ctrl+C reached it already)
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=10)
        progress.finish()
    run.output = output + "".join(errors)
    read_junit(junit, folder, run)
    for nodeid in collected:
        run.results.setdefault(test_name(nodeid), Result("not run"))
    return run


def read_junit(junit: Path, folder: Path, run: TestRun) -> None:
    if not junit.exists():
        return
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        result = Result("passed")
        for child in case:
            words = child.get("message") or ""
            if child.tag in ("failure", "error") and words == "collection failure":
                file = module_file(case.get("name", ""), folder)
                run.import_failures.append(import_failure(file, child.text or ""))
                result = None
                break
            if child.tag in ("failure", "error"):
                text = (child.text or "") + "\n" + words
                result = Result("failed", first_line(words), text)
            elif child.tag == "skipped" and result.outcome == "passed":
                result = Result("skipped", first_line(words))
        if result is not None:
            run.results[case.get("name")] = result


def module_file(dotted: str, folder: Path) -> str:
    """chat.test_consumers -> chat/test_consumers.py (the longest that exists)."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        candidate = "/".join(parts[:end]) + ".py"
        if (folder / candidate).is_file():
            return candidate
    return dotted


def import_failure(file: str, text: str) -> ImportFailure:
    errors = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    words = errors[-1] if errors else first_line(text)
    where = ""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        frame = re.match(r"^(\S+\.py):(\d+): in ", line)
        if frame and not frame[1].startswith("/"):
            code = lines[index + 1].strip() if index + 1 < len(lines) else ""
            where = f"{frame[1]}, line {frame[2]}" + (f": {code}" if code else "")
    return ImportFailure(file, words, where)


# --- make check: where a mistake is in the learner's code -------------------------------

FRAME = re.compile(
    r'File "(?P<quoted>[^"]+)", line (?P<quoted_line>\d+)'
    r"|^\s*(?P<path>[^\s:]+\.py):(?P<line>\d+): ",
    re.MULTILINE,
)
CHAINED = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)


def learner_frames(text: str, folder: Path) -> list[tuple[str, str]]:
    """(file, line) of each traceback frame in the learner's own code, outermost
    first: not a library, not the step's tests or test support."""
    frames = []
    bases = {f"{folder}{os.sep}", f"{folder.resolve()}{os.sep}"}
    for frame in FRAME.finditer(text):
        path = frame["quoted"] or frame["path"]
        line = frame["quoted_line"] or frame["line"]
        base = next((b for b in bases if path.startswith(b)), None)
        if base:
            path = path[len(base) :].replace(os.sep, "/")
        elif os.path.isabs(path) or "site-packages" in path:
            continue
        if is_test_file(path) or path.startswith(("<", "..")):
            continue
        frames.append((path, line))
    return frames


def where_it_happened(text: str, seen_at: int, folder: Path) -> str:
    """The learner's file and line where a mistake seen at `seen_at` happened: on its
    own line (a warning's), else in the last traceback before it, the call that the
    outermost file of the learner's code made (the consumer's call into chat/store.py,
    not the line in store.py)."""
    line_start = text.rfind("\n", 0, seen_at) + 1
    line_end = text.find("\n", seen_at)
    its_line = text[line_start:] if line_end == -1 else text[line_start:line_end]
    before = text[:seen_at]
    last_traceback = before[max(0, *(before.rfind(marker) for marker in CHAINED)) :]
    frames = learner_frames(its_line, folder) or learner_frames(last_traceback, folder)
    if not frames:
        return ""
    outermost_file = frames[0][0]
    file, line = frames[0]
    for frame in frames[1:]:
        if frame[0] != outermost_file:
            break
        file, line = frame
    return f"{file}, line {line}"


@dataclass
class Cause:
    says: str
    where: str = ""
    fatal: bool = False
    noun: str = "mistake"

    def full(self) -> str:
        return f"{self.where}: {self.says}" if self.where else self.says


def mistakes_in(text: str, folder: Path) -> list[Cause]:
    causes = []
    for mistake in MISTAKES:
        says = found_mistake(mistake, text)
        if says:
            seen = re.search(mistake.pattern, text)
            where = where_it_happened(text, seen.end(), folder)
            causes.append(Cause(says, where, mistake.fatal))
    return causes


# --- make check: judging the checkpoints -------------------------------------------------


@dataclass
class Evidence:
    """Everything a checkpoint is judged by."""

    step: Step
    lesson: Lesson
    folder: Path  # where the check ran (gone now): to read its paths in tracebacks
    found: dict  # the probe of the project
    run: TestRun
    broken: TestRun | None  # the learner's own tests, with group_send reaching nobody
    own_files: list[str]  # the lesson's test files the learner wrote
    own_names: set[str]  # the tests in them
    problems: list[Cause]  # what the probe shows is wrong
    artifacts: Path | None  # where the failing browser tests' screenshots are kept
    said: set[str] = field(default_factory=set)  # causes printed in full already

    def cause(self, cause: Cause) -> str:
        """A cause in full the first time, then only as "the same as above"."""
        if cause.says in self.said:
            return f"The same {cause.noun} as above" + (
                f" ({cause.where})." if cause.where else "."
            )
        self.said.add(cause.says)
        return cause.full()

    def what_stopped_the_tests(self) -> Cause | None:
        """A test file that could not be imported, or the mistake that ended the
        run at its first failure."""
        if self.run.import_failures:
            failure = self.run.import_failures[0]
            return Cause(
                f"{failure.file} could not be imported: {failure.words}"
                + (f" ({failure.where})" if failure.where else ""),
                noun="error",
            )
        if self.run.stopped_at:
            failed = [r for r in self.run.results.values() if r.outcome == "failed"]
            return (self.causes_of(failed) or [None])[0]
        return None

    def causes_of(self, results: list[Result]) -> list[Cause]:
        """What made these tests fail, if it is a known mistake: in their reports,
        else in the whole output; else what the probe found."""
        for result in results:
            causes = mistakes_in(result.text, self.folder)
            if causes:
                return causes
        # A warning (a coroutine never awaited) is not in a failure's report.
        fatal = [m for m in mistakes_in(self.run.output, self.folder) if m.fatal]
        return fatal[:1] or self.problems[:1]


class Report:
    def __init__(self):
        self.lines: list[str] = []
        self.passed = 0
        self.failed = 0

    def ok(self, title: str, note: str = "") -> None:
        self.passed += 1
        self.lines.append(f"  ok    {title}{note}")

    def fail(self, title: str, *why: str) -> None:
        self.failed += 1
        self.lines.append(f"  FAIL  {title}")
        for paragraph in why:
            for line in wrap(paragraph):
                self.lines.append(f"          {line}")

    def not_checked(self, title: str, why: str) -> None:
        self.lines.append(f"  --    {title}  ({why})")


def wrap(text: str, width: int = 76) -> list[str]:
    lines = []
    for paragraph in text.splitlines():
        lines.extend(textwrap.wrap(paragraph, width) or [""])
    return lines


def judge_tests(report: Report, checkpoint: Checkpoint, results: dict, e: Evidence):
    """A checkpoint proven by some of the step's tests (results: those tests)."""
    title = checkpoint.title
    ran = {n: r for n, r in results.items() if r.outcome in ("passed", "failed")}
    failed = {n: r for n, r in ran.items() if r.outcome == "failed"}
    skipped = [r.words for r in results.values() if r.outcome == "skipped"]
    not_run = [n for n, r in results.items() if r.outcome == "not run"]
    if failed:
        causes = e.causes_of(list(failed.values()))
        # One line for each failing test, not one for each of its parameters.
        variants = {}
        for name in failed:
            variants.setdefault(name.split("[", 1)[0], []).append(name)
        shown = list(variants)[:SHOWN_FAILURES]
        more = len(variants) - len(shown)
        tests = "test" if more == 1 else "tests"
        also = [
            f"And {more} more {tests} failed: check again with DETAILS=1 (without"
            " make: --details) to see every failure in the tests' own output."
        ]
        if causes:
            why = [e.cause(cause) for cause in causes]
            why.append("Failed: " + "; ".join(failed_words(variants[n]) for n in shown))
        else:
            why = [
                f"Failed: {failed_words(variants[n])}: {failed[variants[n][0]].words}"
                for n in shown
            ]
        why += also if more else []
        if not causes:
            names = [variants[n][0] for n in shown]
            why += [f"To fix: {fix}" for fix in checkpoint.fixes_for(names)]
        report.fail(title, *why)
    elif not results or (not_run and not ran):
        # What the lesson asks for; not for the earlier lessons' checks (no patterns).
        # (Not when a mistake stopped the run: that mistake is what to fix.)
        todo = [f"To do: {checkpoint.explain}"]
        if not checkpoint.tests or e.run.stopped_at:
            todo = []
        report.fail(title, not_checked_because(e), *todo)
    elif not_run:
        report.fail(title, not_checked_because(e))
    elif not ran:
        report.fail(title, f"Skipped: {skipped[0]}")
    else:
        note = f"  ({len(skipped)} skipped: {skipped[0]})" if skipped else ""
        report.ok(title, note)


# How many failing tests of one checkpoint the checklist names.
SHOWN_FAILURES = 5


def failed_words(variants: list[str]) -> str:
    """["test_x[in-memory]", "test_x[redis]"] -> "x (on in-memory, redis)"."""
    parameters = [name.partition("[")[2].removesuffix("]") for name in variants]
    words = plain_words(variants[0].split("[", 1)[0])
    return f"{words} (on {', '.join(parameters)})" if any(parameters) else words


def not_checked_because(e: Evidence) -> str:
    cause = e.what_stopped_the_tests() or (e.problems[:1] or [None])[0]
    if cause is None:
        return "No test of it ran."
    return "Not checked: " + lowered(e.cause(cause))


def lowered(sentence: str) -> str:
    """ "The same mistake ..." -> "the same mistake ..." (a file name stays as it is)."""
    return sentence[0].lower() + sentence[1:] if sentence[:4] == "The " else sentence


def judge_step_tests(report: Report, checkpoint: Checkpoint, e: Evidence):
    results = {n: r for n, r in e.run.results.items() if matches(n, checkpoint.tests)}
    judge_tests(report, checkpoint, results, e)


def judge_asynchronous_consumer(report: Report, checkpoint: Checkpoint, e: Evidence):
    problem = consumer_is_asynchronous(e.found)
    if problem:
        report.fail(checkpoint.title, problem)
    else:
        report.ok(checkpoint.title)


def judge_own_tests(report: Report, checkpoint: Checkpoint, e: Evidence):
    title, files = checkpoint.title, e.lesson.own_tests
    ran = {n: r for n, r in e.run.results.items() if n.split("[", 1)[0] in e.own_names}
    if not e.own_files:
        report.fail(title, f"There is no {' or '.join(files)}. {checkpoint.explain}")
    elif e.run.import_failures:
        report.fail(title, not_checked_because(e))
    elif not ran:
        report.fail(title, f"{files[0]} has no test that ran. {checkpoint.explain}")
    else:
        failed = {n: r for n, r in ran.items() if r.outcome == "failed"}
        skipped = [r.words for r in ran.values() if r.outcome == "skipped"]
        if failed:
            report.fail(
                title,
                *[f"Failed: {plain_words(n)}: {r.words}" for n, r in failed.items()][
                    :3
                ],
            )
        elif len(skipped) == len(ran):
            report.fail(title, f"Skipped: {skipped[0]}")
        else:
            report.ok(title, f"  ({len(ran)} tests)")


def judge_own_tests_notice(report: Report, checkpoint: Checkpoint, e: Evidence):
    caught = e.broken and any(r.outcome == "failed" for r in e.broken.results.values())
    if caught:
        report.ok(checkpoint.title)
    else:
        report.fail(checkpoint.title, checkpoint.explain)


def judge_test_database(report: Report, checkpoint: Checkpoint, e: Evidence):
    name = e.found.get("test_database", "")
    if name and "memory" not in name:
        report.ok(checkpoint.title)
    else:
        report.fail(checkpoint.title, checkpoint.explain)


JUDGES = {
    TESTS: judge_step_tests,
    ASYNCHRONOUS_CONSUMER: judge_asynchronous_consumer,
    OWN_TESTS_PASS: judge_own_tests,
    OWN_TESTS_NOTICE: judge_own_tests_notice,
    TEST_DATABASE_FILE: judge_test_database,
}


def judge_the_rest(report: Report, e: Evidence, quick: bool) -> None:
    """The step's tests that no checkpoint names: the earlier lessons still work."""
    title = (
        "The rest of the step's checks"
        if e.lesson.starts_empty
        else "Everything of the earlier steps still works"
    )
    if quick:
        report.not_checked(title, "not checked: a quick check")
        return
    named = [p for c in e.lesson.checkpoints for p in c.tests]
    named += [p for d in e.lesson.differences for p in d.tests]
    rest = {
        n: r
        for n, r in e.run.results.items()
        if not matches(n, tuple(named)) and n.split("[", 1)[0] not in e.own_names
    }
    if not rest and not e.run.import_failures:
        return
    earlier = Checkpoint(
        title,
        "A check of an earlier lesson: `make compare ALL=1` shows every file that"
        " differs from the reference.",
    )
    judge_tests(report, earlier, rest, e)
    if report.lines[-1].startswith("  ok"):
        report.lines[-1] += f"  ({len(rest)} checks)"


def differences_to_tell(e: Evidence) -> list:
    told = []
    for difference in e.lesson.differences:
        if difference.lacking is not None:
            if difference.lacking(e.found):
                told.append(difference)
        elif e.run.stopped_at:
            continue  # its tests failed of the mistake that stopped the run
        elif any(
            r.outcome == "failed"
            for n, r in e.run.results.items()
            if matches(n, difference.tests)
        ):
            told.append(difference)
    return told


def own_test_names(folder: Path, files: tuple[str, ...]) -> set[str]:
    names = set()
    for name in files:
        if (folder / name).exists():
            names |= set(re.findall(r"def (test\w*)", (folder / name).read_text()))
    return names


def keep_artifacts(folder: Path, run: TestRun) -> Path | None:
    """Screenshots and console logs of failing browser tests, out of the copy the
    check ran in (which goes), to where the output now says they are."""
    saved = folder / TEST_ARTIFACTS
    if not saved.is_dir() or not any(saved.iterdir()):
        return None
    kept = artifacts_folder()
    shutil.copytree(saved, kept, dirs_exist_ok=True)
    run.output = run.output.replace(str(saved), str(kept))
    return kept


# --- make check --------------------------------------------------------------------------


def check(number: str | None, details: bool, quick: bool = False) -> int:
    step = target_step(number)
    lesson = lesson_checks(step.name)
    quick = quick and not lesson.own_tests  # a lesson's own tests are all it has
    print(
        f"Checking workspace/ against the checkpoints of step {step.number} ({step.name}) ..."
    )
    evidence = gather_evidence(step, lesson, quick)
    report = Report()
    stopped = evidence.what_stopped_the_tests()
    if stopped:  # said once, before the checklist that refers to it
        heading = (
            "The error that kept the tests from running"
            if stopped.noun == "error"
            else "The mistake that stopped the tests"
        )
        said = wrap(evidence.cause(stopped), 74)
        report.lines += [f"{heading}:", *(f"  {line}" for line in said), ""]
    for checkpoint in lesson.checkpoints:
        JUDGES[checkpoint.kind](report, checkpoint, evidence)
    judge_the_rest(report, evidence, quick)
    print_report(report, evidence, quick, details)
    record(step, passed=not report.failed, quick=quick)
    return 0 if not report.failed else 1


def gather_evidence(step: Step, lesson: Lesson, quick: bool) -> Evidence:
    """Probe a copy of workspace/ with the step's tests laid over it, and run them
    (and the learner's own tests once more, against a broken chat)."""
    shutil.rmtree(artifacts_folder(), ignore_errors=True)  # an earlier check's
    with tempfile.TemporaryDirectory(prefix="workshop-check-") as temporary:
        folder = Path(temporary) / "project"
        copy_for_check(WORKSPACE, step, lesson, folder)
        found = probe(folder)
        routes_websockets = '"websocket"' in read_text(step.path / "mysite" / "asgi.py")
        problems = [Cause(p) for p in probe_problems(found, routes_websockets)]
        arguments = (
            ["-o", "channel_layers=settings"] if lesson.layer_from_settings else []
        )
        if quick:
            # Only the tests of this lesson's checkpoints: the earlier lessons'
            # tests, which take most of the time, wait for a full check.
            arguments += [f"--only={p}" for c in lesson.checkpoints for p in c.tests]
        own = [name for name in lesson.own_tests if (folder / name).exists()]
        with redis_for_tutorial_settings(found):
            # A mistake the probe found fails every test that meets it: the first
            # failure says enough.
            label = f"step {step.number}'s tests"
            run = run_tests(folder, arguments, label, bool(problems))
            broken = None
            if own:
                broken = run_tests(
                    folder,
                    ["--break-group-send", *own],
                    "your tests again, with group_send reaching nobody",
                )
                run.output += (
                    "\n===== your tests, with group_send reaching nobody =====\n"
                    + broken.output
                )
        return Evidence(
            step, lesson, folder, found, run, broken,
            own_files=own,
            own_names=own_test_names(folder, lesson.own_tests),
            problems=problems,
            artifacts=keep_artifacts(folder, run),
        )  # fmt: skip


def print_report(report: Report, e: Evidence, quick: bool, details: bool) -> None:
    print()
    print("\n".join(report.lines))
    print_differences(differences_to_tell(e))
    total = report.passed + report.failed
    verdict = (
        (
            "every checkpoint of the lesson passes"
            if quick
            else "every checkpoint passes"
        )
        if not report.failed
        else f"{report.passed} of {total} checkpoints pass"
    )
    print(f"\nStep {e.step.number}: {verdict}.")
    if quick and not report.failed:
        print(
            f"A quick check. {both('make check', 'python workshop.py check')} also runs"
            " the earlier lessons' tests, and only it lets the next step carry on from"
            " your code."
        )
    if e.artifacts and report.failed:  # (a lesson's own tests meet failing mutants)
        print(
            "Screenshots and browser console logs of the failing browser tests:"
            f" {shown(e.artifacts)}/"
        )
    if details:
        print("\n===== the tests' own output =====\n" + e.run.output)
    elif report.failed:
        print(
            f"The tests' own output: {both('make check DETAILS=1', 'python workshop.py check --details')}"
        )


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def print_differences(differences: list) -> None:
    if not differences:
        return
    print("\nThe workshop's version also (not required, and not a failure):")
    for difference in differences:
        for number, line in enumerate(
            wrap(f"{difference.also}, because {difference.because}.", 72)
        ):
            print(("  - " if number == 0 else "    ") + line)


def record(step: Step, passed: bool, quick: bool) -> None:
    """Whether the step's check passed: only a full one lets the next step carry on."""
    state = read_state()
    if state_step(state) != step:
        return
    if quick:
        state = {**state, "quick_passed": passed}
        if not passed:
            state["passed"] = False
    else:
        state = {**state, "passed": passed, "quick_passed": passed}
    write_state({**state, "step": step.name})


# --- make compare / make run ---------------------------------------------------------------


def compare(number: str | None, colour: bool, everything: bool = False) -> int:
    """The files the lesson has the learner write, against the reference step; with
    `everything`, every file of the project (tests, test support, READMEs too)."""
    from workshop.diffs import BOLD, RESET, changed_pairs, colour_lines

    step = target_step(number)
    mine = Step(step.number, WORKSPACE)
    wanted = set(written_by_the_learner(step))
    changed, lines = [], []
    for name, old_lines, new_lines in changed_pairs(step, mine):
        if everything or name in wanted:
            changed.append(name)
            lines += difflib.unified_diff(
                old_lines,
                new_lines,
                f"{step.name}/{name}" if (step.path / name).exists() else "/dev/null",
                f"workspace/{name}" if (mine.path / name).exists() else "/dev/null",
            )
    whose = "every file" if everything else "the lesson's files that you write"
    header = (
        f"{step.name} (the reference) -> workspace/ (yours), {whose}:"
        f" {len(changed)} differ"
    )
    print(f"{BOLD}{header}{RESET}" if colour else header)
    for name in changed:
        print(f"  {name}")
    if not everything:
        print(
            "Every file, tests and READMEs too: "
            + both("make compare ALL=1", "python workshop.py compare --all")
        )
    print()
    lines = [line if line.endswith("\n") else line + "\n" for line in lines]
    sys.stdout.write(
        "\n".join(colour_lines(lines, False)) + "\n" if colour else "".join(lines)
    )
    return 0


def manage(arguments: list[str], admin: bool) -> int:
    """manage.py (or django-admin) in workspace/, with the workshop's Python."""
    if not WORKSPACE.exists():
        raise WorkspaceError(
            "There is no workspace/ yet: "
            + both("make start STEP=1", "python workshop.py start 1")
        )
    command = (
        [sys.executable, "-m", "django"] if admin else [sys.executable, "manage.py"]
    )
    if not admin and not (WORKSPACE / "manage.py").exists():
        raise WorkspaceError(
            "workspace/ has no manage.py yet (python workshop.py admin startproject mysite .)"
        )
    return subprocess.run([*command, *arguments], cwd=WORKSPACE).returncode
