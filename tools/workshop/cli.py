"""The commands behind the Makefile: python -m workshop.cli {serve,test,diff,redis,steps}.

Every error a learner can cause (a step that does not exist, a port in use, ...)
ends with a one-paragraph message and exit status 2, never a traceback.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from workshop.diffs import BOLD, RESET, colour_lines, html_page, step_diff
from workshop.lessons import check_all, read_manifest, write_diffs
from workshop.ports import port_in_use
from workshop.redis_server import RedisServer
from workshop.steps import ROOT, NoSuchStep, Step, all_steps, describe_steps, find_step


class UserError(Exception):
    """A mistake in how a command was called; its message says how to fix it."""


# --- make stepN ------------------------------------------------------------------


def step_prefers_redis(step: Step) -> bool:
    lesson = read_manifest().get(step.name)
    return bool(lesson and lesson.settings.get("redis") == "preferred")


def local_redis_for(step: Step, required: bool) -> tuple[dict, RedisServer | None]:
    """REDIS_URL for a step that wants Redis: the given one, or a redis-server of ours.

    Returns the environment to add and the server to stop afterwards (or None).
    """
    if os.environ.get("REDIS_URL"):
        print(f"== Redis: using REDIS_URL={os.environ['REDIS_URL']}")
        return {}, None
    executable = shutil.which("redis-server")
    if executable is None:
        if required:
            raise UserError(
                "Several workers need Redis, and there is no redis-server here and no"
                " REDIS_URL.\n" + REDIS_INSTALL_HELP
            )
        print("== Redis: no redis-server found and no REDIS_URL: falling back to the")
        print("   in-memory channel layer (the server explains what that cannot do).")
        return {"REDIS_URL": ""}, None
    server = RedisServer(executable).start()
    print(
        f"== Redis: started redis-server for this run at {server.url} (stops with the server)\n"
        f"   Commands in another terminal reach this server with REDIS_URL={server.url}"
    )
    return {"REDIS_URL": server.url}, server


def run_until_interrupted(command: list[str], cwd: Path, env: dict) -> int:
    """Run a server until it exits, or until Ctrl+C or SIGTERM stops it (and us)."""
    import signal

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **env})
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        return 0


def serve(step_number: str, host: str, port: int) -> int:
    step = find_step(step_number)
    if port_in_use(port, host):
        raise UserError(
            f"Port {port} is already in use on {host} (another server is running there?).\n"
            f"Stop that server, or pick another port: make step{step.number} PORT={port + 1}"
        )
    manage = [sys.executable, "manage.py"]
    print(f"== Step {step.number}: {step.name} - preparing its database (db.sqlite3)")
    migrate = subprocess.run([*manage, "migrate", "--verbosity", "1"], cwd=step.path)
    if migrate.returncode != 0:
        return migrate.returncode
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/chat/"
    if not step_prefers_redis(step):
        print(
            f"\n== Step {step.number}: open {url} in your browser. Stop the server with Ctrl+C.\n"
        )
        sys.stdout.flush()
        os.chdir(step.path)
        # Replace this process with the server, so Ctrl+C goes straight to it.
        os.execv(sys.executable, [*manage, "runserver", f"{host}:{port}"])
    env, redis_server = local_redis_for(step, required=False)
    try:
        print(
            f"\n== Step {step.number}: open {url} in your browser. Stop the server with Ctrl+C.\n"
        )
        sys.stdout.flush()
        return run_until_interrupted(
            [*manage, "runserver", f"{host}:{port}"], step.path, env
        )
    finally:
        if redis_server:
            redis_server.close()


def serve_workers(step_number: str, host: str, port: int, workers: int) -> int:
    """Several worker processes with uvicorn --workers, on Redis (required)."""
    step = find_step(step_number)
    if port_in_use(port, host):
        raise UserError(
            f"Port {port} is already in use on {host}. Pick another: PORT={port + 1}"
        )
    env, redis_server = local_redis_for(step, required=True)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"],
            cwd=step.path,
            env={**os.environ, **env},
            check=True,
        )
        print(
            f"\n== Step {step.number} with {workers} uvicorn workers: open"
            f" http://{host}:{port}/chat/ (log in, or sign up at /accounts/signup/)."
            " Stop with Ctrl+C.\n",
            flush=True,
        )
        command = [
            sys.executable, "-m", "uvicorn", "mysite.asgi:application",
            "--host", host, "--port", str(port), "--workers", str(workers),
        ]  # fmt: skip
        return run_until_interrupted(command, step.path, env)
    finally:
        if redis_server:
            redis_server.close()


# --- make test ---------------------------------------------------------------------


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


def run_step_tests(
    step: Step, pytest_args: list[str], scratch: Path
) -> tuple[int, dict, float]:
    junit_xml = scratch / f"{step.name}.xml"
    command = [sys.executable, "-m", "pytest", f"--junitxml={junit_xml}", *pytest_args]
    print(f"\n===== {step.name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    # One interpreter per step: every step has its own `mysite` and `chat`.
    returncode = subprocess.run(command, cwd=step.path).returncode
    return returncode, count_results(junit_xml), time.monotonic() - started


def test(step_numbers: list[str], pytest_args: list[str]) -> int:
    # The tooling's own tests run as one more suite, after the steps.
    tools = Step(0, ROOT / "tools")
    if step_numbers:
        steps = [
            tools if number == "tools" else find_step(number) for number in step_numbers
        ]
    else:
        steps = [*all_steps(), tools]
    results = []
    with tempfile.TemporaryDirectory(prefix="workshop-test-") as scratch:
        for step in steps:
            results.append((step, *run_step_tests(step, pytest_args, Path(scratch))))

    width = max(len(step.name) for step in steps)
    print("\n===== summary (one line per suite)")
    totals = {"passed": 0, "failed": 0, "skipped": 0}
    any_failed = False
    for step, returncode, counts, seconds in results:
        # pytest exits 5 when it collected nothing: a step without tests is a failure too.
        ok = returncode == 0
        any_failed |= not ok
        for key in totals:
            totals[key] += counts[key]
        verdict = (
            "ok  " if ok else ("FAIL" if returncode != 5 else "FAIL (no tests ran)")
        )
        print(
            f"{step.name:<{width}}  {verdict}  {counts['passed']} passed, {counts['failed']} failed,"
            f" {counts['skipped']} skipped  ({seconds:.1f}s)"
        )
    print(
        f"total: {totals['passed']} passed, {totals['failed']} failed, {totals['skipped']} skipped"
    )
    return 1 if any_failed else 0


# --- make flake-check ---------------------------------------------------------------


def flake_check(step_number: str, runs: int, test_paths: list[str]) -> int:
    """Run a step's browser tests `runs` times in a row; any failure is a flake."""
    step = find_step(step_number)
    missing = [path for path in test_paths if not (step.path / path).exists()]
    if missing:
        raise UserError(
            f"{step.name} has no {', '.join(missing)}: no browser tests to repeat."
        )
    # A skipped browser test proves nothing here: a missing browser is a failure.
    environment = {**os.environ, "REQUIRE_BROWSER": "1"}
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *test_paths,
    ]
    passed_runs = 0
    for run in range(1, runs + 1):
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=step.path, env=environment, capture_output=True, text=True
        )
        last_line = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        seconds = time.monotonic() - started
        if result.returncode == 0 and "skipped" not in last_line:
            passed_runs += 1
            print(
                f"run {run:>2}/{runs}: ok    {last_line}  ({seconds:.1f}s)", flush=True
            )
        else:
            print(
                f"run {run:>2}/{runs}: FAIL  {last_line}  ({seconds:.1f}s)", flush=True
            )
            print(result.stdout[-4000:] + result.stderr[-2000:], flush=True)
    print(
        f"flake-check: {passed_runs}/{runs} runs of {' '.join(test_paths)} in {step.name} passed"
    )
    return 0 if passed_runs == runs else 1


# --- make diff ---------------------------------------------------------------------


def resolve_pair(from_number: str | None, to_number: str | None) -> tuple[Step, Step]:
    for value in (from_number, to_number):
        if value and not value.isdigit():
            raise NoSuchStep(
                f'"{value}" is not a step number. The steps are: {describe_steps()}.'
            )
    if from_number and not to_number:
        to_number = str(int(from_number) + 1)
    elif to_number and not from_number:
        from_number = str(int(to_number) - 1)
    elif not from_number and not to_number:
        from_number, to_number = "1", "2"
    return find_step(from_number), find_step(to_number)


def diff(
    from_number: str | None, to_number: str | None, colour: bool, words: bool
) -> int:
    old, new = resolve_pair(from_number, to_number)
    changed, lines = step_diff(old, new)
    header = f"{old.name} -> {new.name}: {len(changed)} file(s) differ"
    print(f"{BOLD}{header}{RESET}" if colour else header)
    for name in changed:
        print(f"  {name}")
    print()
    lines = [line if line.endswith("\n") else line + "\n" for line in lines]
    if colour:
        sys.stdout.write("\n".join(colour_lines(lines, words)) + "\n")
    else:
        sys.stdout.write("".join(lines))
    return 0


def diff_html(from_number: str | None, to_number: str | None) -> int:
    old, new = resolve_pair(from_number, to_number)
    folder = ROOT / "build"
    folder.mkdir(exist_ok=True)
    path = folder / f"step{old.number}-to-step{new.number}.html"
    path.write_text(html_page(old, new), encoding="utf-8")
    print(
        f"Wrote {path.relative_to(ROOT)}: open it in a browser (it needs nothing else)."
    )
    return 0


# --- make check-steps / make diffs ---------------------------------------------------


def check_steps() -> int:
    problems = check_all()
    for problem in problems:
        print(f"check-steps: {problem}")
    steps = all_steps()
    if problems:
        print(f"check-steps: {len(problems)} problem(s) in {len(steps)} steps")
        return 1
    print(
        f"check-steps: {len(steps)} steps ok: each changes only its lesson's files"
        " (lessons.ini), READMEs have the skeleton, refactor steps keep their tests,"
        " quoted code matches, notes/diffs are fresh"
    )
    return 0


def diffs() -> int:
    for path in write_diffs():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


# --- make redis --------------------------------------------------------------------

REDIS_INSTALL_HELP = """\
redis-server is not installed. Any one of these gives you a Redis on port 6379:

  Docker:        docker run --rm -p 6379:6379 redis:7
  macOS:         brew install redis && brew services start redis
  Debian/Ubuntu: sudo apt install redis-server
  Windows:       use WSL and the Debian/Ubuntu command, or Docker Desktop

Then run a step on it:  REDIS_URL=redis://127.0.0.1:6379/0 make step2"""


def redis(port: int) -> int:
    executable = shutil.which("redis-server")
    if executable is None:
        print(REDIS_INSTALL_HELP)
        return 1
    if port_in_use(port):
        raise UserError(
            f"Something already listens on port {port} - probably a Redis you started before.\n"
            f"Use it: REDIS_URL=redis://127.0.0.1:{port}/0 make step2   (or: make redis REDIS_PORT=6380)"
        )
    print(f"Redis on redis://127.0.0.1:{port}/0 - stop it with Ctrl+C.")
    print(
        f"In another terminal:  REDIS_URL=redis://127.0.0.1:{port}/0 make step2\n",
        flush=True,
    )
    os.execv(
        executable,
        [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
    )
    return 0  # not reached


# --- entry point -------------------------------------------------------------------


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(
            f"PORT must be a number from 1 to 65535, not {text!r}"
        )
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="migrate and run one step")
    serve_parser.add_argument("step")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=port_number, default=8000)
    workers_parser = commands.add_parser(
        "serve-workers", help="uvicorn --workers on Redis"
    )
    workers_parser.add_argument("step")
    workers_parser.add_argument("--host", default="127.0.0.1")
    workers_parser.add_argument("--port", type=port_number, default=8000)
    workers_parser.add_argument("--workers", type=int, default=2)
    demo_parser = commands.add_parser("demo-workers", help="in-memory layer vs Redis")
    demo_parser.add_argument("step")
    test_parser = commands.add_parser(
        "test", help="run each step's tests in its own process"
    )
    test_parser.add_argument("steps", nargs="*")
    test_parser.add_argument(
        "--pytest-args", default="", help="extra arguments for pytest"
    )
    diff_parser = commands.add_parser("diff", help="what changed between two steps")
    diff_parser.add_argument("--from", dest="from_step", default="")
    diff_parser.add_argument("--to", dest="to_step", default="")
    diff_parser.add_argument(
        "--colour", choices=["auto", "always", "never"], default="auto"
    )
    diff_parser.add_argument("--words", action="store_true", help="mark changed words")
    diff_parser.add_argument(
        "--html", action="store_true", help="write a page to project"
    )
    commands.add_parser("check-steps", help="check that the steps cannot drift")
    commands.add_parser("diffs", help="regenerate notes/diffs/")
    flake_parser = commands.add_parser(
        "flake-check", help="repeat a step's browser tests"
    )
    flake_parser.add_argument("step")
    flake_parser.add_argument("--runs", type=int, default=20)
    flake_parser.add_argument("tests", nargs="+")
    redis_parser = commands.add_parser(
        "redis", help="run redis-server in the foreground"
    )
    redis_parser.add_argument("--port", type=port_number, default=6379)
    commands.add_parser("steps", help="list the steps")
    args = parser.parse_args(argv)

    try:
        if args.command == "serve":
            return serve(args.step, args.host, args.port)
        if args.command == "serve-workers":
            return serve_workers(args.step, args.host, args.port, args.workers)
        if args.command == "demo-workers":
            from workshop.demo_workers import demo

            return demo(find_step(args.step))
        if args.command == "test":
            return test(args.steps, args.pytest_args.split())
        if args.command == "diff":
            if args.html:
                return diff_html(args.from_step or None, args.to_step or None)
            colour = args.colour == "always" or (
                args.colour == "auto" and sys.stdout.isatty()
            )
            return diff(
                args.from_step or None, args.to_step or None, colour, args.words
            )
        if args.command == "check-steps":
            return check_steps()
        if args.command == "diffs":
            return diffs()
        if args.command == "flake-check":
            return flake_check(args.step, args.runs, args.tests)
        if args.command == "redis":
            return redis(args.port)
        if args.command == "steps":
            for step in all_steps():
                print(f"{step.number}  {step.name}")
            return 0
    except (UserError, NoSuchStep) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `make diff | head`
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
