"""`make standalone`: each step, copied alone, stands on its own.

For every step: copy the folder alone to a temporary directory, create a fresh
virtualenv there, install the step's own requirements.txt, run `pytest`, and for a
step with browser tests also `python manage.py test chat.tests`, exactly as the
README's "Take one step with you" says. Nothing of the workshop is on the path: a
step that needed it would fail here. A skipped test counts as a failure (in CI every
part is installed).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from workshop.steps import all_steps, find_step, project_files


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def run(command: list, cwd: Path, log) -> subprocess.CompletedProcess:
    # Nothing of the workshop: no PYTHONPATH, no REQUIRE_* plugin.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log.write(f"\n$ {' '.join(map(str, command))}\n")
    log.flush()
    result = subprocess.run(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=1800,
    )  # fmt: skip
    log.write(result.stdout)
    return result


def check_step(
    step, folder: Path, log, base_python: str, pytest_args: list[str] = ()
) -> str | None:
    """None if the copy passes; else what failed."""
    copy = folder / step.name
    for name in project_files(step.path):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(step.path / name, copy / name)
    if run([base_python, "-m", "venv", ".venv"], copy, log).returncode:
        return "python -m venv failed"
    python = venv_python(copy / ".venv")
    install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if run([*install, "-r", "requirements.txt"], copy, log).returncode:
        return "pip install -r requirements.txt failed"
    tests = run(
        [python, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *pytest_args],
        copy,
        log,
    )
    last = (tests.stdout.strip().splitlines() or ["no output"])[-1]
    if tests.returncode or "skipped" in last:
        return f"pytest: {last}"
    if (copy / "chat" / "tests.py").exists():
        django = run(
            [python, "manage.py", "test", "chat.tests", "--noinput"], copy, log
        )
        if (
            django.returncode
            or "skipped=" in django.stdout
            or "\nOK" not in django.stdout
        ):
            return (
                "manage.py test chat.tests: "
                + (django.stdout.strip().splitlines() or ["no output"])[-1]
            )
    return None


def python_version(python: str) -> str:
    found = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    )
    return found.stdout.strip() or "?"


def standalone(
    numbers: list[str],
    jobs: int,
    pythons: list[str] = (),
    pytest_args: dict[str, list[str]] | None = None,
) -> int:
    """Each step alone; with `pythons`, the steps' virtualenvs are made with each of
    them in turn (make ci: the oldest and the newest supported Python); with
    `pytest_args`, a step's pytest gets those (make ci: the last step on PostgreSQL).
    """
    pytest_args = pytest_args or {}
    steps = [find_step(number) for number in numbers] or all_steps()
    pythons = list(pythons) or [sys.executable]
    chosen = {step.name: pythons[i % len(pythons)] for i, step in enumerate(steps)}
    versions = {python: python_version(python) for python in pythons}
    logs = Path(tempfile.mkdtemp(prefix="workshop-standalone-logs-"))
    failures = 0
    started = time.monotonic()

    def one(step):
        with tempfile.TemporaryDirectory(prefix="workshop-standalone-") as folder:
            began = time.monotonic()
            with open(logs / f"{step.name}.log", "w", encoding="utf-8") as log:
                problem = check_step(
                    step,
                    Path(folder),
                    log,
                    chosen[step.name],
                    pytest_args.get(step.name, []),
                )
            return step, problem, time.monotonic() - began

    print(
        f"Each step copied alone, in a virtualenv of its own ({jobs} at a time;"
        f" logs in {logs}):",
        flush=True,
    )
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(one, step) for step in reversed(steps)]
        for future in as_completed(futures):
            step, problem, seconds = future.result()
            failures += problem is not None
            verdict = "ok  " if problem is None else f"FAIL  {problem}"
            version = versions[chosen[step.name]]
            args = " ".join(pytest_args.get(step.name, []))
            print(
                f"  {step.name:<20} Python {version:<8} {args + ' ' if args else ''}"
                f"{verdict}  ({seconds:.0f}s)",
                flush=True,
            )
    print(
        f"standalone: {len(steps) - failures} of {len(steps)} steps pass on their own"
        f" ({time.monotonic() - started:.0f}s)"
    )
    return 1 if failures else 0
