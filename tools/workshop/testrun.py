"""`make test`: each step's tests in a Python process of its own, several at once.

Every step has its own `mysite` and `chat`, so each suite needs an interpreter of its
own. They spend much of their time waiting (servers starting, browsers, Redis), so
they run side by side; each suite's output goes to a log file, and its result is
printed as it finishes: one line, its slowest tests, and on failure the failures.
The workshop's pytest plugin (REQUIRE_* checks) is added from here, never by a step.
"""

import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from workshop.lessons import pins
from workshop.steps import ROOT

LOGS = ROOT / "build" / "test-logs"
SLOWEST = 5


@dataclass
class Suite:
    name: str
    path: Path
    # pytest's own arguments for this suite (a mutant's test ids, ...).
    arguments: list[str] = field(default_factory=list)


@dataclass
class Result:
    suite: Suite
    returncode: int
    counts: dict[str, int]
    seconds: float
    log: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def count_results(junit_xml: Path) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if not junit_xml.exists():
        return counts
    root = ElementTree.parse(junit_xml).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        tests = int(suite.get("tests", 0))
        failed = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped = int(suite.get("skipped", 0))
        counts["failed"] += failed
        counts["skipped"] += skipped
        counts["passed"] += tests - failed - skipped
    return counts


def pytest_command(suite: Suite, junit_xml: Path, pytest_args: list[str]) -> list[str]:
    command = [
        sys.executable, "-m", "pytest",
        "-p", "workshop.pytest_plugin",
        f"--junitxml={junit_xml}",
        f"--durations={SLOWEST}", "--durations-min=1.0",
    ]  # fmt: skip
    requirements = suite.path / "requirements.txt"
    if requirements.is_file() and "pytest-asyncio" not in pins(requirements):
        # As in a virtualenv made from the step's own requirements: pytest-asyncio
        # is not there, and would only warn about settings the step does not need.
        command += ["-p", "no:asyncio"]
    return command + suite.arguments + pytest_args


def environment(suite_name: str | None = None) -> dict[str, str]:
    env = {**os.environ}
    if suite_name:
        # Hypothesis keeps its examples and constants in build/, not in a .hypothesis
        # folder inside the step: a step's folder holds only the step.
        hypothesis = ROOT / "build" / "hypothesis" / suite_name
        env.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", str(hypothesis))
    tools = str(ROOT / "tools")
    if tools not in env.get("PYTHONPATH", "").split(os.pathsep):
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [tools, env.get("PYTHONPATH")])
        )
    return env


def run_suite(suite: Suite, pytest_args: list[str], stream: bool) -> Result:
    LOGS.mkdir(parents=True, exist_ok=True)
    file_name = re.sub(r"[^\w.-]+", "-", suite.name).strip("-")
    log = LOGS / f"{file_name}.log"
    junit_xml = LOGS / f"{file_name}.xml"
    junit_xml.unlink(missing_ok=True)
    command = pytest_command(suite, junit_xml, pytest_args)
    started = time.monotonic()
    if stream:
        print(f"\n===== {suite.name}: pytest {' '.join(command[3:])}", flush=True)
        returncode = subprocess.run(
            command, cwd=suite.path, env=environment(file_name)
        ).returncode
        log.write_text("(printed above)\n")
    else:
        with open(log, "w", encoding="utf-8") as output:
            returncode = subprocess.run(
                command,
                cwd=suite.path,
                env=environment(file_name),
                stdout=output,
                stderr=subprocess.STDOUT,
            ).returncode
    return Result(
        suite, returncode, count_results(junit_xml), time.monotonic() - started, log
    )


def verdict(result: Result) -> str:
    # pytest exits 5 when it collected nothing: a suite without tests fails too.
    if result.ok:
        return "ok  "
    return "FAIL (no tests ran)" if result.returncode == 5 else "FAIL"


def result_line(result: Result, width: int) -> str:
    counts = result.counts
    return (
        f"{result.suite.name:<{width}}  {verdict(result)}  {counts['passed']} passed,"
        f" {counts['failed']} failed, {counts['skipped']} skipped"
        f"  ({result.seconds:.1f}s)"
    )


def slowest_tests(log_text: str) -> list[str]:
    lines = log_text.splitlines()
    for index, line in enumerate(lines):
        if "slowest" in line and "durations" in line:
            found = []
            for entry in lines[index + 1 :]:
                if not entry.strip() or entry.startswith(("=", "(")):
                    break
                found.append(entry.strip())
            return found[:SLOWEST]
    return []


def failure_report(log_text: str, limit: int = 400) -> str:
    """From pytest's first FAILURES/ERRORS header to the end, at most `limit` lines."""
    lines = log_text.splitlines()
    start = next(
        (
            index
            for index, line in enumerate(lines)
            if line.startswith("=") and (" FAILURES " in line or " ERRORS " in line)
        ),
        max(0, len(lines) - 60),
    )
    shown = lines[start:]
    if len(shown) > limit:
        shown = [f"... ({len(shown) - limit} lines; all of them in the log)"] + shown[
            -limit:
        ]
    return "\n".join(shown)


def report(result: Result, width: int) -> None:
    print(result_line(result, width), flush=True)
    text = result.log.read_text(encoding="utf-8", errors="replace")
    for entry in slowest_tests(text):
        print(f"    slowest: {entry}")
    if not result.ok:
        print(failure_report(text))
        print(f"    the whole output: {result.log.relative_to(ROOT)}\n", flush=True)


def run_suites(
    suites: list[Suite], pytest_args: list[str], jobs: int, first: tuple = ()
) -> int:
    """Run the suites, `jobs` at a time: those named in `first` start first, then
    the others from the last to the first (the last steps are the longest)."""
    width = max(len(suite.name) for suite in suites)
    started = time.monotonic()
    if len(suites) == 1 or jobs <= 1:
        results = [run_suite(suite, pytest_args, stream=True) for suite in suites]
    else:
        print(
            f"Running {len(suites)} suites, {jobs} at a time; each one's result as it"
            f" finishes (logs in {LOGS.relative_to(ROOT)}/):",
            flush=True,
        )
        results = []

        def place(index: int) -> tuple[int, int]:
            name = suites[index].name
            group = next(
                (g for g, prefix in enumerate(first) if name.startswith(prefix)),
                len(first),
            )
            # Those named first in their given order; the others from the last.
            return group, index if group < len(first) else -index

        order = [suites[i] for i in sorted(range(len(suites)), key=place)]
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(run_suite, s, pytest_args, False) for s in order]
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                report(result, width)
        position = {suite.name: index for index, suite in enumerate(suites)}
        results.sort(key=lambda result: position[result.suite.name])

    print("\n===== summary (one line per suite)")
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    for result in results:
        for key in totals:
            totals[key] += result.counts[key]
        print(result_line(result, width))
    print(
        f"total: {totals['passed']} passed, {totals['failed']} failed,"
        f" {totals['skipped']} skipped  ({time.monotonic() - started:.0f}s)"
    )
    return 0 if all(result.ok for result in results) else 1
