"""Do the workshop yourself: your own project in workspace/, checked against a step.

    python workshop.py start 3     workspace/ from the end of step 2, to write step 3
    python workshop.py check       step 3's checkpoints against workspace/, in plain words
    python workshop.py compare     workspace/ against the reference step 3, as a diff
    python workshop.py run         run workspace/ on http://127.0.0.1:8000/chat/

workspace/ is ignored by git and by every other workshop command; it remembers in
workspace/.workshop.json which step it works towards and whether its check passed.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from workshop.checkpoints import (
    STEPS,
    Checkpoint,
    Difference,
    StepChecks,
    consumer_is_asynchronous,
    diagnose,
    matches,
    plain_words,
)
from workshop.file_kinds import is_code, is_test_file
from workshop.lessons import read_manifest
from workshop.ports import port_in_use
from workshop.steps import ROOT, Step, find_step, previous_step, project_files

# WORKSHOP_WORKSPACE names another folder (the checker's own tests use one).
WORKSPACE = Path(os.environ.get("WORKSHOP_WORKSPACE") or ROOT / "workspace")
STATE = ".workshop.json"


class WorkspaceError(Exception):
    """A mistake in using workspace/; the message says what to do."""


def both(make: str, python: str) -> str:
    return f"{make}   (without make: {python})"


def read_state(folder: Path = WORKSPACE) -> dict:
    try:
        return json.loads((folder / STATE).read_text())
    except (OSError, ValueError):
        return {}


def write_state(state: dict, folder: Path = WORKSPACE) -> None:
    (folder / STATE).write_text(json.dumps(state) + "\n")


def lesson_info(step: Step) -> dict[str, str]:
    lesson = read_manifest().get(step.name)
    return lesson.settings if lesson else {}


# --- make start -------------------------------------------------------------------------


def start(number: str, force: bool) -> int:
    step = find_step(number)
    before = previous_step(step)
    state = read_state()
    if WORKSPACE.exists() and not force:
        if state.get("step") == step.number:
            print(f"workspace/ already works towards step {step.number}: carrying on.")
            return print_next(step)
        if before and state.get("step") == before.number and state.get("passed"):
            write_state({"step": step.number, "passed": False})
            print(
                f"You finished step {before.number} in workspace/: step {step.number}"
                " carries on from your own code."
            )
            return print_next(step)
        doing = (
            f"works towards step {state['step']}"
            + (", and its check has not passed yet" if not state.get("passed") else "")
            if state
            else "is not a workshop folder"
        )
        raise WorkspaceError(
            f"workspace/ {doing}, so it is not the end of step"
            f" {before.number if before else 0}. Nothing was changed.\n"
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
        print("Created workspace/, empty: step 1 starts from startproject.")
    write_state({"step": step.number, "passed": False})
    return print_next(step)


def print_next(step: Step) -> int:
    info = lesson_info(step)
    lesson = read_manifest().get(step.name)
    files = sorted(name for name in (lesson.files if lesson else ()) if is_code(name))
    print(f"\nStep {step.number}: {info.get('title', step.name)}")
    print(f"  Follow:    {step.name}/README.md")
    print(f"  Tutorial:  {info.get('tutorial', 'beyond the official tutorial')}")
    if step.number == 1:
        print("  Begin:     in workspace/, as the tutorial's part 1 says:")
        print("               python workshop.py admin startproject mysite .")
        print("               python workshop.py manage startapp chat")
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
    state = read_state()
    if not WORKSPACE.exists() or not state.get("step"):
        raise WorkspaceError(
            "There is no workspace/ yet. Start a step first, for example:\n"
            f"  {both('make start STEP=2', 'python workshop.py start 2')}"
        )
    return find_step(state["step"])


# --- make check --------------------------------------------------------------------------

IN_MEMORY_DEFAULT = Difference(
    tests=(),
    also="runs with nothing else installed: the in-memory channel layer, unless"
    " REDIS_URL is set",
    because="the official tutorial needs Redis from part 2 on",
    lacking=lambda found: str(found.get("layer_backend")).startswith("channels_redis"),
)

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


def copy_for_check(workspace: Path, step: Step, checks: StepChecks, scratch: Path):
    """The learner's project, with the step's tests and test support laid over it."""
    for name in project_files(workspace):
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(workspace / name, target)
    lesson = read_manifest().get(step.name)
    own_tests = {
        name
        for name in (lesson.files if lesson else ())
        if name.startswith("chat/test")
    }
    for name in step.files():
        if not is_test_file(name):
            continue
        if checks.learner_writes_tests and name in own_tests:
            continue  # this lesson is writing them: the learner's own are checked
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(step.path / name, target)


def run_pytest(folder: Path, arguments: list[str], junit: Path) -> tuple[int, str]:
    from workshop.testrun import environment

    command = [
        sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
        "-p", "workshop.pytest_plugin", "-p", "workshop.check_plugin",
        f"--junitxml={junit}", *arguments,
    ]  # fmt: skip
    env = {**environment(), "REDIS_URL": ""}
    result = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=1800
    )
    return result.returncode, result.stdout + result.stderr


def outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """Test name -> (passed | failed | skipped, message)."""
    found = {}
    if not junit.exists():
        return found
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", (child.get("message") or "")
            elif child.tag == "skipped":
                outcome, message = "skipped", child.get("message") or ""
        found[case.get("name")] = (outcome, message)
    return found


def redis_for_tutorial_settings(found: dict):
    """The tutorial's settings use Redis on 127.0.0.1:6379: start one there for the
    check if nothing listens and redis-server is installed."""
    hosts = [str(host) for host in found.get("layer_hosts", [])]
    wants_6379 = any("6379" in host for host in hosts)
    executable = shutil.which("redis-server")
    if not wants_6379 or port_in_use(6379) or not executable:
        return None
    from workshop.redis_process import RedisServer

    print("(Your settings use Redis on port 6379: starting one there for the check.)")
    return RedisServer(executable, port=6379).start()


class Report:
    def __init__(self):
        self.lines: list[str] = []
        self.passed = 0
        self.failed = 0

    def checkpoint(self, title: str, ok: bool, why: str = "", note: str = ""):
        if ok:
            self.passed += 1
            self.lines.append(f"  ok    {title}{note}")
        else:
            self.failed += 1
            self.lines.append(f"  FAIL  {title}")
            for line in wrap(why):
                self.lines.append(f"          {line}")


def wrap(text: str, width: int = 76) -> list[str]:
    import textwrap

    lines = []
    for paragraph in text.splitlines():
        lines.extend(textwrap.wrap(paragraph, width) or [""])
    return lines


def judge_tests(
    report: Report,
    checkpoint: Checkpoint,
    results: dict,
    first_cause: str | None,
):
    relevant = {n: r for n, r in results.items() if matches(n, checkpoint.tests)}
    ran = {n: r for n, r in relevant.items() if r[0] != "skipped"}
    failed = [n for n, (outcome, _) in ran.items() if outcome == "failed"]
    skipped = [r[1] for r in relevant.values() if r[0] == "skipped"]
    note = f"  ({len(skipped)} skipped: {skipped[0]})" if skipped else ""
    if not relevant:
        report.checkpoint(checkpoint.title, False, "No test of it ran.")
    elif not ran:
        report.checkpoint(checkpoint.title, False, f"Skipped: {skipped[0]}")
    elif failed:
        why = first_cause or checkpoint.explain
        names = "; ".join(plain_words(name) for name in failed[:3])
        report.checkpoint(checkpoint.title, False, f"{why}\nFailed: {names}")
    else:
        report.checkpoint(checkpoint.title, True, note=note)


def check(number: str | None, details: bool, quick: bool = False) -> int:
    step = target_step(number)
    workspace = WORKSPACE
    checks = STEPS.get(step.number, StepChecks())
    print(
        f"Checking workspace/ against the checkpoints of step {step.number} ({step.name}) ..."
    )
    with tempfile.TemporaryDirectory(prefix="workshop-check-") as temporary:
        scratch = Path(temporary) / "project"
        copy_for_check(workspace, step, checks, scratch)
        found = probe(scratch)
        redis = redis_for_tutorial_settings(found)
        try:
            arguments = (
                ["-o", "channel_layers=settings"] if checks.layer_from_settings else []
            )
            quick = quick and not checks.learner_writes_tests
            if quick:
                # Only the tests of this lesson's checkpoints: the earlier lessons'
                # tests, which take most of the time, wait for a full check.
                for checkpoint in checks.checkpoints:
                    arguments += [f"--only={p}" for p in checkpoint.tests]
            junit = Path(temporary) / "results.xml"
            _, output = run_pytest(scratch, arguments, junit)
            results = outcomes(junit)
            broken = None
            if checks.learner_writes_tests:
                own = [
                    p
                    for p in ("chat/tests.py", "chat/test_consumers.py")
                    if (scratch / p).exists()
                ]
                if own:
                    broken_xml = Path(temporary) / "broken.xml"
                    _, broken_output = run_pytest(
                        scratch, ["--break-group-send", *own], broken_xml
                    )
                    broken = outcomes(broken_xml)
                    output += (
                        "\n===== your tests, with group_send reaching nobody =====\n"
                        + broken_output
                    )
        finally:
            if redis:
                redis.close()
        own = Own(scratch)  # what the learner's own tests are, before scratch goes
    causes = [d.message for d in diagnose(found, output, step.number)]
    report = Report()
    named = set()
    for checkpoint in checks.checkpoints:
        named |= {n for n in results if matches(n, checkpoint.tests)}
        if checkpoint.tests:
            judge_tests(report, checkpoint, results, causes[0] if causes else None)
        elif step.number == 3:
            problem = found.get("error") or consumer_is_asynchronous(found)
            report.checkpoint(checkpoint.title, problem is None, problem or "")
        elif step.number == 4:
            judge_own_tests(report, checkpoint, found, results, broken, own)
    for difference in checks.differences:
        named |= {n for n in results if matches(n, difference.tests)}
    rest = {
        n: r
        for n, r in results.items()
        if n not in named and not (checks.learner_writes_tests and own.wrote(n))
    }
    if quick and step.number > 1:
        report.lines.append(
            "  --    Everything of the earlier steps still works  (not checked:"
            " a quick check)"
        )
    elif rest:
        earlier = Checkpoint(
            "Everything of the earlier steps still works"
            if step.number > 1
            else "The rest of the step's checks",
            tuple(rest),
            causes[0]
            if causes
            else "A check of an earlier lesson fails: the failing"
            " checks below say what; `make compare` shows what differs.",
        )
        judge_tests(report, earlier, rest, causes[0] if causes else None)
        report.lines[-1] += (
            f"  ({len(rest)} checks)" if report.lines[-1].startswith("  ok") else ""
        )
    print("\n".join(report.lines))
    also = []
    for difference in checks.differences:
        relevant = [r for n, r in results.items() if matches(n, difference.tests)]
        if difference.lacking is not None:
            if difference.lacking(found):
                also.append(difference)
        elif any(outcome == "failed" for outcome, _ in relevant):
            also.append(difference)
    if step.number in (2, 3, 4) and str(found.get("layer_backend")).startswith(
        "channels_redis"
    ):
        also.append(IN_MEMORY_DEFAULT)
    if also:
        print("\nThe workshop's version also (not required, and not a failure):")
        for difference in also:
            for number, line in enumerate(
                wrap(f"{difference.also}, because {difference.because}.", 72)
            ):
                print(("  - " if number == 0 else "    ") + line)
    total = report.passed + report.failed
    verdict = (
        "every checkpoint passes"
        if not report.failed
        else f"{report.passed} of {total} checkpoints pass"
    )
    print(f"\nStep {step.number}: {verdict}.")
    if quick and not report.failed:
        print(f"A quick check: {both('make check', 'python workshop.py check')} also")
        print("runs the earlier lessons' tests.")
    if details:
        print("\n===== the tests' own output =====\n" + output)
    elif report.failed:
        print(
            f"The tests' own output: {both('make check DETAILS=1', 'python workshop.py check --details')}"
        )
    state = read_state()
    if state.get("step") == step.number and not (quick and not report.failed):
        write_state({**state, "passed": not report.failed})
    return 0 if not report.failed else 1


class Own:
    """The learner's own tests (the testing lesson): which files, which test names."""

    FILES = ("chat/tests.py", "chat/test_consumers.py")

    def __init__(self, folder: Path):
        import re

        self.has_browser_tests = (folder / "chat" / "tests.py").exists()
        self.names = set()
        for path in self.FILES:
            if (folder / path).exists():
                self.names |= set(
                    re.findall(r"def (test\w*)", (folder / path).read_text())
                )

    def wrote(self, test_name: str) -> bool:
        return test_name.split("[", 1)[0] in self.names


def judge_own_tests(report, checkpoint, found, results, broken, own):
    title = checkpoint.title
    if title.startswith("Your browser tests"):
        ran = {n: r for n, r in results.items() if own.wrote(n)}
        if not own.has_browser_tests:
            report.checkpoint(
                title, False, "There is no chat/tests.py. " + checkpoint.explain
            )
        elif not ran:
            report.checkpoint(
                title,
                False,
                "chat/tests.py has no test that ran. " + checkpoint.explain,
            )
        else:
            failed = [n for n, (o, _) in ran.items() if o == "failed"]
            skipped = [m for n, (o, m) in ran.items() if o == "skipped"]
            if failed:
                report.checkpoint(
                    title,
                    False,
                    "These fail: " + "; ".join(plain_words(n) for n in failed[:3]),
                )
            elif skipped and len(skipped) == len(ran):
                report.checkpoint(title, False, f"Skipped: {skipped[0]}")
            else:
                report.checkpoint(title, True, note=f"  ({len(ran)} tests)")
    elif title.startswith("Your tests notice"):
        if not broken:
            report.checkpoint(title, False, checkpoint.explain)
        else:
            caught = [n for n, (o, _) in broken.items() if o == "failed"]
            report.checkpoint(title, bool(caught), checkpoint.explain)
    else:  # the test database
        name = found.get("test_database", "")
        ok = bool(name) and name != ":memory:" and "memory" not in name
        report.checkpoint(title, ok, checkpoint.explain)


# --- make compare / make run ---------------------------------------------------------------


def compare(number: str | None, colour: bool) -> int:
    from workshop.diffs import BOLD, RESET, colour_lines, step_diff

    step = target_step(number)
    changed, lines = step_diff(step, Step(step.number, WORKSPACE))
    header = f"{step.name} (the reference) -> workspace/ (yours): {len(changed)} file(s) differ"
    print(f"{BOLD}{header}{RESET}" if colour else header)
    for name in changed:
        print(f"  {name}")
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
