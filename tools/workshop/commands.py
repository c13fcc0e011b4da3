"""Every command, with make and without, and the help that lists them.

Standard library only: workshop.py prints the help from here before any virtualenv
exists (`make` alone, `python workshop.py help`).
"""

import os

from workshop.steps import describe_steps


def spelled(make: str, python: str) -> str:
    """A command as the learner gives them: make sets MAKELEVEL for what it runs."""
    return make if "MAKELEVEL" in os.environ else python


# (make form, python form, what it does): `help` prints this table.
COMMANDS = [
    ("make help", "python workshop.py help", "this list"),
    ("make stepN", "python workshop.py step N", "run step N on http://127.0.0.1:8000/chat/ (PORT=8001 / --port 8001)"),
    ("make stepN-workers", "python workshop.py workers N", "step N under uvicorn with several worker processes on Redis (WORKERS=2)"),
    ("make stepN-stack", "python workshop.py stack N", "the last step as deployed: nginx, two app servers, PostgreSQL, Redis (PORT=8080)"),
    ("make demo-inmemory-workers", "python workshop.py demo-inmemory-workers", "two workers, one room: who gets a message on the in-memory layer, and on Redis"),
    ("make start STEP=N", "python workshop.py start N", "your own workspace/ from the end of step N-1, to write step N yourself (FORCE=1 / --force)"),
    ("make check", "python workshop.py check", "step N's checkpoints against workspace/, in plain words (QUICK=1 / --quick: this lesson's checkpoints only; DETAILS=1 / --details: the tests' output)"),
    ("make compare", "python workshop.py compare", "the files you write in workspace/ against the reference step, as a diff (ALL=1 / --all: every file)"),
    ("make run", "python workshop.py run", "run workspace/ on http://127.0.0.1:8000/chat/"),
    ("make manage ARGS=\"startapp chat\"", "python workshop.py manage startapp chat", "python manage.py ... in workspace/, with the workshop's Python"),
    ("make admin ARGS=\"startproject mysite .\"", "python workshop.py admin startproject mysite .", "django-admin ... in workspace/ (step 1 starts from an empty folder)"),
    ("make test", "python workshop.py test", "every step's tests, several at once, one summary line per step"),
    ("make test-stepN", "python workshop.py test N", "step N's tests (PYTEST_ARGS=\"-x -k lobby\" / --pytest-args ...)"),
    ("make redis", "python workshop.py redis", "run redis-server on port 6379 (or say how to install it)"),
    ("make diff FROM=2 TO=3", "python workshop.py diff 2 3", "what a lesson changed, code first (WORDS=1 / --words: mark changed words)"),
    ("make diff-html FROM=2 TO=3", "python workshop.py diff-html 2 3", "the same as a page to project: build/step2-to-step3.html"),
    ("make diffs", "python workshop.py diffs", "regenerate notes/diffs/ (every consecutive pair of steps)"),
    ("make check-steps", "python workshop.py check-steps", "check that each step changes only its lesson's files (lessons.ini)"),
    ("make test-tools", "python workshop.py test tools", "the tooling's own tests (lesson checks, troubleshooting entries, mutants)"),
    ("make ci", "python workshop.py ci", "everything CI runs: lint, check-steps, every suite, mutants, standalone steps, other Pythons"),
    ("make standalone", "python workshop.py standalone", "each step copied alone, in a fresh virtualenv with its own requirements: pytest passes"),
    ("make flake-check", "python workshop.py flake-check", "the browser tests of the first step with them, 20 times in a row (FLAKE_STEP=N / N; RUNS= / --runs; DATABASE=postgresql / --database postgresql)"),
    ("make bench", "python workshop.py bench", "measure the steps' servers against a raw WebSocket baseline; regenerates notes/performance.md"),
    ("make bench-quick", "python workshop.py bench --quick", "the short smoke run of the benchmark (CI)"),
    ("make lint", "python workshop.py lint", "ruff check and ruff format --check over every step and the tooling"),
    ("make format", "python workshop.py format", "let ruff format and fix what it can"),
    ("make clean", "python workshop.py clean", "remove caches and test leftovers (keeps .venv and every db.sqlite3)"),
    ("make distclean", "python workshop.py distclean", "also remove .venv (the next command re-creates it)"),
]  # fmt: skip


def help_text(python: str) -> str:
    """The help; `python` says which Python the commands run on."""
    lines = [
        f"Channels Chat Workshop. Steps: {describe_steps()}",
        f"{python} (another one: make <target> PYTHON=python3.12, or"
        " python workshop.py --python python3.12 <command>)",
        "",
    ]
    width = max(len(make) for make, _, _ in COMMANDS)
    for make, python_form, what in COMMANDS:
        lines.append(f"  {make:<{width}}  {what}")
        lines.append(f"  {'':<{width}}  without make: {python_form}")
    return "\n".join(lines)
