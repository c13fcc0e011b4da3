"""The workshop's commands: `python workshop.py <command>`, or `make <target>`.

workshop.py (standard library only) makes the virtualenv and runs this module in it.
Every error a learner can cause (a step that does not exist, a port in use, ...)
ends with a short message and exit status 2, never a traceback; stopping a server
with Ctrl+C is normal and ends with exit status 0.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from workshop import commands
from workshop.diffs import BOLD, RESET, colour_lines, html_page, step_diff
from workshop.diy import WorkspaceError
from workshop.guard import under_guard
from workshop.lessons import check_all, read_manifest, write_diffs
from workshop.ports import port_in_use
from workshop.redis_process import RedisServer
from workshop.steps import ROOT, NoSuchStep, Step, all_steps, describe_steps, find_step


class UserError(Exception):
    """A mistake in how a command was called; its message says how to fix it."""


def help_text() -> str:
    return commands.help_text(python_line())


def python_line() -> str:
    return f"Python {sys.version.split()[0]} in {Path(sys.prefix).name}"


# --- make stepN ----------------------------------------------------------------------


def lesson_setting(step: Step, key: str) -> str | None:
    lesson = read_manifest().get(step.name)
    return lesson.settings.get(key) if lesson else None


REDIS_INSTALL_HELP = """\
redis-server is not installed. Any one of these gives you a Redis on port 6379:

  Debian/Ubuntu: sudo apt install redis-server
  macOS:         brew install redis && brew services start redis
  Docker:        docker run --rm -p 6379:6379 redis:7
  Windows:       Memurai (a Redis for Windows), or WSL with the Debian/Ubuntu command

Then run a step on it:  REDIS_URL=redis://127.0.0.1:6379/0 make step2
   (without make, set REDIS_URL in the environment, then: python workshop.py step 2)"""


def local_redis_for(step: Step, required: bool) -> tuple[dict, RedisServer | None]:
    """REDIS_URL for a step that wants Redis: the given one, or a redis-server of ours
    on the usual port 6379 when it is free (so that other terminals can use the usual
    URL), else on a free port. Returns the environment to add and the server to stop."""
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
    port = 6379 if not port_in_use(6379) else None
    server = RedisServer(executable, port=port, guarded=True).start()
    print(
        f"== Redis: started redis-server for this run at {server.url} (it stops with"
        f" the server)\n   Commands in another terminal reach it with"
        f" REDIS_URL={server.url}"
    )
    return {"REDIS_URL": server.url}, server


def guarded(command: list[str]) -> list[str]:
    """The command under workshop.guard, which ends all of the server (its reloader's
    child, its workers) when asked, or when this process dies. POSIX only."""
    if os.name != "posix":
        return command
    return under_guard(command)


def run_until_interrupted(
    command: list[str],
    cwd: Path,
    env: dict,
    says_stopped: bool = False,
    watcher=None,
) -> int:
    """Run a server until it ends, or until Ctrl+C (or SIGTERM, SIGHUP) stops it: then
    stop all of it, and end normally, with exit status 0 (and "Stopped.", unless it
    says so itself). A server that ends by itself with an error passes that on.
    watcher(process), if given, starts watching it and returns an Event that stops
    the watching."""
    process = subprocess.Popen(guarded(command), cwd=cwd, env={**os.environ, **env})
    stop_watching = watcher(process) if watcher else None
    try:
        returncode = process.wait()
        if returncode != 0 and returncode not in STOPPED:
            return returncode  # it failed: its own output says why
    except KeyboardInterrupt:
        if stop_watching:
            stop_watching.set()  # the servers stopping now are not news
        stop_server(process)
    finally:
        if stop_watching:
            stop_watching.set()
    if not says_stopped:
        print("\nStopped.", flush=True)
    return 0


def stop_server(process: subprocess.Popen) -> None:
    """Ctrl+C to the guard, which stops the server's processes in turn (a Windows
    console's Ctrl+C has reached the server already)."""
    if os.name == "posix":
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Exit statuses of a server that SIGINT or SIGTERM ended: by the signal itself (-N),
# as a shell or workshop.guard reports it (128+N), or passed on by sys.exit(-N), as
# runserver's reloader does (256-N); and Windows' STATUS_CONTROL_C_EXIT.
STOPPED = {3221225786} | {
    status for number in (2, 15) for status in (-number, 128 + number, 256 - number)
}
ENDING_SIGNALS = [
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP")
    if hasattr(signal, name)
]


def stop_like_ctrl_c() -> None:
    """SIGTERM and SIGHUP end a command as Ctrl+C does; only the first of them counts
    (a terminal's Ctrl+C and the one workshop.py passes on arrive together), so that
    stopping is never cut short by a traceback. So does the end of the parent."""

    def interrupt(signum, frame):
        for ending in ENDING_SIGNALS:
            signal.signal(ending, signal.SIG_IGN)
        raise KeyboardInterrupt

    for ending in ENDING_SIGNALS:
        signal.signal(ending, interrupt)
    if os.name == "posix":
        parent = os.getppid()

        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=watch, daemon=True).start()


def check_port(port: int, host: str, make_target: str, command: str) -> None:
    """Refused in one line, and how to run the same on the next port, as the learner
    runs it: `make <make_target> PORT=...` or `python workshop.py <command> --port`."""
    if port_in_use(port, host):
        again = commands.spelled(
            f"make {make_target} PORT={port + 1}",
            f"python workshop.py {command} --port {port + 1}",
        )
        raise UserError(
            f"Port {port} is already in use on {host} (another server is running"
            f" there?).\nStop that server, or pick another port: {again}"
        )


def database_in_use(step: Step) -> str:
    """Where the step's settings will put its data, as its README names it."""
    settings = (step.path / "mysite" / "settings.py").read_text(encoding="utf-8")
    if os.environ.get("DATABASE_URL") and "DATABASE_URL" in settings:
        return "PostgreSQL, from DATABASE_URL"
    if os.environ.get("SQLITE_PATH") and "SQLITE_PATH" in settings:
        return os.environ["SQLITE_PATH"]
    return "db.sqlite3"


def serve(step_number: str, host: str, port: int, folder: Path | None = None) -> int:
    """Run a step (or, with `folder`, the learner's workspace working towards it)."""
    step = find_step(step_number)
    make, python = ("run", "run") if folder else (f"step{step.number}", "step")
    python += "" if folder else f" {step.number}"
    check_port(port, host, make, python)
    wants_redis = lesson_setting(step, "redis") == "preferred"
    if folder:
        step = Step(step.number, folder)
    manage = [sys.executable, "manage.py"]
    print(
        f"== Step {step.number}: {step.name} ({python_line()}) - preparing its database"
        f" ({database_in_use(step)})"
    )
    migrate = subprocess.run([*manage, "migrate", "--verbosity", "1"], cwd=step.path)
    if migrate.returncode != 0:
        return migrate.returncode
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/chat/"
    env, redis_server = {}, None
    if wants_redis:
        env, redis_server = local_redis_for(step, required=False)
    try:
        print(
            f"\n== Step {step.number}: open {url} in your browser."
            " Stop the server with Ctrl+C.\n",
            flush=True,
        )
        return run_until_interrupted(
            [*manage, "runserver", f"{host}:{port}"], step.path, env
        )
    finally:
        if redis_server:
            redis_server.close()


def serve_workers(step_number: str, host: str, port: int, workers: int) -> int:
    """Several worker processes with uvicorn --workers, on Redis (required)."""
    step = find_step(step_number)
    if lesson_setting(step, "workers") != "yes":
        with_workers = [s.number for s in all_steps() if lesson_setting(s, "workers")]
        raise UserError(
            f"Step {step.number} does not run on several workers (its channel layer"
            f" is in memory). Steps that do: {', '.join(map(str, with_workers))}."
        )
    check_port(port, host, f"step{step.number}-workers", f"workers {step.number}")
    env, redis_server = local_redis_for(step, required=True)
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"],
            cwd=step.path,
            env={**os.environ, **env},
            check=True,
        )
        print(
            f"\n== Step {step.number} with {workers} uvicorn workers ({python_line()}):"
            f" open http://{host}:{port}/chat/ (log in, or sign up at"
            " /accounts/signup/). Stop with Ctrl+C.\n",
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


def serve_stack(step_number: str, port: int) -> int:
    """nginx in front of two app servers, PostgreSQL and Redis (the step's own
    testsupport/stack.py, which its tests start too)."""
    step = find_step(step_number)
    if lesson_setting(step, "stack") != "yes":
        with_stack = [s.number for s in all_steps() if lesson_setting(s, "stack")]
        raise UserError(
            f"Step {step.number} has no deployed stack. Steps that do:"
            f" {', '.join(map(str, with_stack))}."
        )
    check_port(port, "127.0.0.1", f"step{step.number}-stack", f"stack {step.number}")
    from workshop import stack_watch

    command = [sys.executable, "-m", "testsupport.stack", "--port", str(port)]
    return run_until_interrupted(
        command, step.path, {}, says_stopped=True, watcher=stack_watch.start
    )


# --- make test -------------------------------------------------------------------------


def default_jobs() -> int:
    # Suites wait on servers and browsers much of the time: one more than the cores.
    return (os.cpu_count() or 1) + 1


def step_suites(step: Step, every_database: bool) -> list:
    """A step's tests; for a step whose lessons.ini names test_databases, once more
    on each database after the first (pytest --database=postgresql)."""
    from workshop.testrun import Suite

    suites = [Suite(step.name, step.path)]
    databases = (lesson_setting(step, "test_databases") or "").split()
    if every_database:
        for database in databases[1:]:
            suites.append(
                Suite(f"{step.name}[{database}]", step.path, [f"--database={database}"])
            )
    return suites


def test(
    step_numbers: list[str], pytest_args: list[str], jobs: int, every_database: bool
) -> int:
    from workshop.testrun import Suite, run_suites

    suites = []
    if step_numbers:
        for number in step_numbers:
            if number == "tools":
                suites.append(Suite("tools", ROOT / "tools"))
            else:
                # One step: on every database it names.
                suites += step_suites(find_step(number), every_database=True)
    else:
        for step in all_steps():
            suites += step_suites(step, every_database)
    print(f"== Tests on {python_line()}", flush=True)
    return run_suites(suites, pytest_args, jobs)


# --- make flake-check ------------------------------------------------------------------


def flake_check(
    step_number: str | None, runs: int, test_paths: list[str], database: str = ""
) -> int:
    """Run a step's browser tests `runs` times in a row; any failure is a flake. By
    default, of the first step that has them (the lesson that writes them), on its
    first database; `database` names another that the step's tests know."""
    from workshop.testrun import environment

    having = [s for s in all_steps() if all((s.path / p).exists() for p in test_paths)]
    step = find_step(step_number) if step_number else (having or all_steps())[0]
    missing = [path for path in test_paths if not (step.path / path).exists()]
    if missing:
        raise UserError(
            f"{step.name} has no {', '.join(missing)}: no browser tests to repeat."
        )
    databases = (lesson_setting(step, "test_databases") or "sqlite").split()
    if database and database not in databases:
        raise UserError(
            f"{step.name} runs its tests on {' and '.join(databases)}, not {database}."
        )
    # A skipped test proves nothing here: a missing browser (or server) is a failure.
    env = {**environment(), "REQUIRE_BROWSER": "1"}
    if database == "postgresql":
        env["REQUIRE_POSTGRES"] = "1"
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-p", "workshop.pytest_plugin", *test_paths,
    ]  # fmt: skip
    if database:
        command.append(f"--database={database}")
    passed_runs = 0
    for run in range(1, runs + 1):
        started = time.monotonic()
        result = subprocess.run(
            command, cwd=step.path, env=env, capture_output=True, text=True
        )
        last_line = (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        seconds = time.monotonic() - started
        ok = result.returncode == 0 and "skipped" not in last_line
        passed_runs += ok
        print(
            f"run {run:>2}/{runs}: {'ok  ' if ok else 'FAIL'}  {last_line}  ({seconds:.1f}s)",
            flush=True,
        )
        if not ok:
            print(result.stdout[-4000:] + result.stderr[-2000:], flush=True)
    print(
        f"flake-check: {passed_runs}/{runs} runs of {' '.join(test_paths)} in"
        f" {step.name}{f' on {database}' if database else ''} passed"
    )
    return 0 if passed_runs == runs else 1


# --- make diff -------------------------------------------------------------------------


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


# --- make check-steps / make diffs -------------------------------------------------------


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
        " (lessons.ini) and at most the lesson-size limit of code, READMEs have the"
        " skeleton, refactor steps keep their tests, quoted code matches, requirements"
        " agree, no step uses the workshop's tooling, notes/diffs are fresh"
    )
    return 0


def diffs() -> int:
    for path in write_diffs():
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


# --- make redis --------------------------------------------------------------------------


def redis(port: int) -> int:
    executable = shutil.which("redis-server")
    if executable is None:
        print(REDIS_INSTALL_HELP)
        return 1
    if port_in_use(port):
        raise UserError(
            f"Something already listens on port {port} - probably a Redis you started"
            f" before.\nUse it: REDIS_URL=redis://127.0.0.1:{port}/0 make step2   (or:"
            " make redis REDIS_PORT=6380)"
        )
    print(f"Redis on redis://127.0.0.1:{port}/0 - stop it with Ctrl+C.")
    print(
        f"In another terminal:  REDIS_URL=redis://127.0.0.1:{port}/0 make step2\n",
        flush=True,
    )
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    return run_until_interrupted(command, ROOT, {})


# --- make lint / format / clean ------------------------------------------------------------


def lint() -> int:
    check = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT)
    form = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=ROOT
    )
    return check.returncode or form.returncode


def format_code() -> int:
    subprocess.run([sys.executable, "-m", "ruff", "format", "."], cwd=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--fix", "."], cwd=ROOT
    ).returncode


CACHE_NAMES = {"__pycache__", ".pytest_cache", ".hypothesis", "test-artifacts"}


def clean(everything: bool) -> int:
    removed = []
    for path in sorted(ROOT.rglob("*")):
        if any(part.startswith(".venv") for part in path.relative_to(ROOT).parts):
            continue
        if path.is_dir() and path.name in CACHE_NAMES:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        elif path.is_file() and path.name.startswith("test_db.sqlite3"):
            path.unlink()  # what a browser test's database left (-wal, -shm)
            removed.append(path)
    for name in (".ruff_cache", "bench-results", "build"):
        if (ROOT / name).exists():
            shutil.rmtree(ROOT / name, ignore_errors=True)
            removed.append(ROOT / name)
    for path in removed:
        print(f"removed {path.relative_to(ROOT)}")
    if everything:
        venv = Path(sys.prefix)
        print(
            f"Removing {venv.name} after this command ends (the next command re-creates"
            " it)."
        )
        # This process runs from the virtualenv: remove it once this process is gone.
        remover = (
            f"import shutil, time; time.sleep(1); shutil.rmtree({str(venv)!r},"
            " ignore_errors=True)"
        )
        subprocess.Popen([sys._base_executable, "-c", remover], cwd=ROOT)
    else:
        print("Kept .venv and every db.sqlite3 (make distclean also removes .venv).")
    return 0


# --- entry point -------------------------------------------------------------------------


def port_number(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(
            f"PORT must be a number from 1 to 65535, not {text!r}"
        )
    return int(text)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of 1 or more, not {text!r}"
        )
    return int(text)


class Parser(argparse.ArgumentParser):
    """A wrong command or option gets one line, not argparse's usage first."""

    def error(self, message: str):
        if message.startswith("argument command: invalid choice"):  # the commands
            help_command = commands.spelled("make help", "python workshop.py help")
            message = re.sub(r" \(choose from .*\)$", "", message)
            message += f" (the commands: {help_command})"
        self.exit(2, f"error: {message}\n")


# `make step2` is `python workshop.py step 2`; step2 is accepted too, as are
# step2-workers and step2-stack.
MAKE_STYLE = re.compile(r"step(\d+)(?:-(workers|stack))?")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python workshop.py", add_help=False)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("help")
    commands.add_parser("steps")
    stack_parser = commands.add_parser("stack")
    stack_parser.add_argument("step")
    stack_parser.add_argument("--port", type=port_number, default=8080)
    for name in ("step", "workers"):
        serve_parser = commands.add_parser(name)
        serve_parser.add_argument("step")
        serve_parser.add_argument("--host", default="127.0.0.1")
        serve_parser.add_argument("--port", type=port_number, default=8000)
        serve_parser.add_argument("--workers", type=positive, default=2)
    commands.add_parser("demo-inmemory-workers")
    start_parser = commands.add_parser("start")
    start_parser.add_argument("step")
    start_parser.add_argument("--force", action="store_true")
    check_parser = commands.add_parser("check")
    check_parser.add_argument("step", nargs="?")
    check_parser.add_argument("--details", action="store_true")
    check_parser.add_argument("--quick", action="store_true")
    compare_parser = commands.add_parser("compare")
    compare_parser.add_argument("step", nargs="?")
    compare_parser.add_argument("--all", action="store_true")
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--host", default="127.0.0.1")
    run_parser.add_argument("--port", type=port_number, default=8000)
    for name in ("manage", "admin"):
        passthrough = commands.add_parser(name)
        passthrough.add_argument("arguments", nargs=argparse.REMAINDER)
    test_parser = commands.add_parser("test")
    test_parser.add_argument("steps", nargs="*")
    test_parser.add_argument("--pytest-args", default="")
    test_parser.add_argument("--jobs", type=positive, default=default_jobs())
    test_parser.add_argument(
        "--every-database",
        action="store_true",
        help="also run the steps that name test_databases on each of them",
    )
    for name in ("diff", "diff-html"):
        diff_parser = commands.add_parser(name)
        diff_parser.add_argument("from_step", nargs="?", default="")
        diff_parser.add_argument("to_step", nargs="?", default="")
        # make passes FROM= and TO= as options: either may be left out.
        diff_parser.add_argument("--from", dest="from_option", default="")
        diff_parser.add_argument("--to", dest="to_option", default="")
        diff_parser.add_argument(
            "--colour", choices=["auto", "always", "never"], default="auto"
        )
        diff_parser.add_argument("--words", action="store_true")
    commands.add_parser("diffs")
    commands.add_parser("check-steps")
    ci_parser = commands.add_parser("ci")
    ci_parser.add_argument("--jobs", type=positive, default=default_jobs())
    standalone_parser = commands.add_parser("standalone")
    standalone_parser.add_argument("steps", nargs="*")
    standalone_parser.add_argument("--jobs", type=positive, default=default_jobs())
    flake_parser = commands.add_parser("flake-check")
    flake_parser.add_argument("step", nargs="?")
    flake_parser.add_argument("--runs", type=positive, default=20)
    flake_parser.add_argument("--database", default="")
    flake_parser.add_argument("tests", nargs="*", default=["chat/tests.py"])
    redis_parser = commands.add_parser("redis")
    redis_parser.add_argument("--port", type=port_number, default=6379)
    commands.add_parser("bench")
    commands.add_parser("lint")
    commands.add_parser("format")
    commands.add_parser("clean")
    commands.add_parser("distclean")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark has options of its own
        from workshop.bench.run import main as bench_main

        return bench_main(argv[1:])
    if argv and (make_style := MAKE_STYLE.fullmatch(argv[0])):
        argv = [make_style[2] or "step", make_style[1], *argv[1:]]
    args = build_parser().parse_args(argv)
    stop_like_ctrl_c()
    try:
        if args.command in (None, "help"):
            print(help_text())
            return 0
        if args.command == "steps":
            for step in all_steps():
                print(f"{step.number}  {step.name}")
            return 0
        if args.command == "step":
            return serve(args.step, args.host, args.port)
        if args.command == "workers":
            return serve_workers(args.step, args.host, args.port, args.workers)
        if args.command == "stack":
            return serve_stack(args.step, args.port)
        if args.command in ("start", "check", "compare", "run", "manage", "admin"):
            return workspace_command(args)
        if args.command == "demo-inmemory-workers":
            from workshop.demo_workers import demo

            return demo(last_step_with("workers"))
        if args.command == "test":
            return test(
                args.steps, args.pytest_args.split(), args.jobs, args.every_database
            )
        if args.command in ("diff", "diff-html"):
            old = args.from_option or args.from_step or None
            new = args.to_option or args.to_step or None
            if args.command == "diff-html":
                return diff_html(old, new)
            colour = args.colour == "always" or (
                args.colour == "auto" and sys.stdout.isatty()
            )
            return diff(old, new, colour, args.words)
        if args.command == "diffs":
            return diffs()
        if args.command == "check-steps":
            return check_steps()
        if args.command == "ci":
            return ci(args.jobs)
        if args.command == "standalone":
            from workshop.standalone import standalone

            return standalone(args.steps, args.jobs)
        if args.command == "flake-check":
            return flake_check(args.step, args.runs, args.tests, args.database)
        if args.command == "redis":
            return redis(args.port)
        if args.command == "lint":
            return lint()
        if args.command == "format":
            return format_code()
        if args.command in ("clean", "distclean"):
            return clean(everything=args.command == "distclean")
    except (UserError, NoSuchStep, WorkspaceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `make diff | head`
        return 0
    except KeyboardInterrupt:
        print("\nStopped.")
        return 0
    return 2


# --- make ci ---------------------------------------------------------------------------

OTHER_PYTHONS = (
    "3.10",
    "3.13",
)  # the oldest and the newest supported, besides this one


def find_python(version: str) -> str | None:
    """A python3.X that runs, from PATH or from pyenv."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(map(str, pyenv.glob(f"{version}.*/bin/python{version}")))
    for candidate in filter(None, candidates):
        if (
            subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode
            == 0
        ):
            return candidate
    return None


def other_pythons() -> list[str]:
    """The supported Pythons besides this one that are on this machine."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = [find_python(v) for v in OTHER_PYTHONS if v != here]
    missing = [v for v in OTHER_PYTHONS if v != here and not find_python(v)]
    for version in missing:
        print(f"Python {version} is not on this machine: not tested on it.")
    return [python for python in found if python]


def ci(jobs: int) -> int:
    """Everything CI runs, in order, stopping at the first failure: what a learner's
    `make test` runs, and what only a maintainer needs besides."""
    from workshop.standalone import standalone
    from workshop.testrun import run_suites

    os.environ.update(
        {"REQUIRE_REDIS": "1", "REQUIRE_BROWSER": "1", "REQUIRE_POSTGRES": "1",
         "REQUIRE_NGINX": "1"}
    )  # fmt: skip
    stages = [
        ("lint", lint),
        ("check-steps", check_steps),
        ("every step's tests (make test)", lambda: test([], [], jobs, False)),
        (
            "the tooling's tests, each file a suite; the property tests with many more"
            " examples; beside them, the tutorial's steps and the last alone, each in a"
            " virtualenv of its own, on the other Pythons in turn (the last on its other"
            " databases)",
            # Side by side: the last step alone is the longest job, and on its own it
            # would leave a core idle for minutes. Much of the rest is pip and waiting.
            lambda: side_by_side(
                lambda: run_suites(maintainer_suites(), [], jobs, LONGEST_FIRST),
                lambda: standalone(
                    [str(step.number) for step in ci_steps()],
                    2,
                    other_pythons(),
                    last_step_databases(),
                ),
            ),
        ),
        ("the benchmark's smoke run", lambda: bench_quick()),
    ]
    started = time.monotonic()
    for title, stage in stages:
        print(f"\n######## make ci: {title}", flush=True)
        if stage() != 0:
            print(f"\nmake ci: FAILED at: {title} ({time.monotonic() - started:.0f}s)")
            return 1
    print(f"\nmake ci: everything passed ({time.monotonic() - started:.0f}s)")
    return 0


def side_by_side(*stages) -> int:
    """Run the stages at the same time; 0 if every one passed."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(stages)) as pool:
        futures = [pool.submit(stage) for stage in stages]
        return max(future.result() for future in futures)


BEFORE_AND_AFTER = "checked_before_and_after"


def ci_steps() -> list:
    """The steps that make ci also checks alone (make standalone) and before and after
    their lesson (the do-it-yourself checker): the tutorial's four, whose code
    learners type from the tutorial, and the last step, where lessons are added.
    Every step runs in make test; each step between differs from the one before only
    in its lesson's files (make check-steps). On two cores every step twice more
    would take make ci past its 45 minutes: `make standalone` and `make test-tools`
    check them all."""
    steps = all_steps()
    return steps[:4] + steps[-1:]


def do_it_yourself_parts() -> dict[str, str]:
    """test_do_it_yourself.py in parts that run side by side (pytest -k), the longest
    first: the tutorial's code, each step checked before and after its lesson (the
    last steps take longest), then the rest."""
    from workshop.checkpoints import lesson_checks

    parts = {
        # One part, so one at a time: the tutorial's settings all use the Redis on
        # port 6379 and the room "lobby", and two checks at once would share them.
        # Only the learner who follows all four parts: it checks each part's code in
        # full, as the tests of each part alone do again (make test-tools runs them).
        "the tutorial's code": "carries_on_from_part_to_part",
    }
    for step in reversed(ci_steps()):
        if not lesson_checks(step.name).starts_empty:
            parts[step.name] = f"{BEFORE_AND_AFTER} and {step.name}"
    parts["the rest"] = (
        f"not ({BEFORE_AND_AFTER} or tutorials_own_code or carries_on_from_part)"
    )
    return parts


# The tooling's tests that take a step each (mutants of it that its tests must catch;
# its browser tests under manage.py test): in make ci, only for ci_steps().
ONLY_CI_STEPS = ("test_tests_catch_breakage", "test_tutorial_commands")

# The longest of make ci's maintainer suites, started first.
LONGEST_FIRST = ("tools/test_do_it_yourself", "tools/test_tests_catch_breakage")


def maintainer_suites() -> list:
    from workshop.testrun import Suite

    tools = ROOT / "tools"
    suites = []
    for path in sorted((tools / "tests").glob("test_*.py")):
        name, target = f"tools/{path.stem}", f"tests/{path.name}"
        if path.stem == "test_do_it_yourself":
            # Each check runs a whole step's tests: in parts, to run side by side.
            for part, selection in do_it_yourself_parts().items():
                suites.append(
                    Suite(f"{name}[{part}]", tools, [target, "-k", selection])
                )
        elif path.stem in ONLY_CI_STEPS:
            # Each test a step: only the steps make ci checks alone too.
            names = " or ".join(step.name for step in ci_steps())
            suites.append(Suite(name, tools, [target, "-k", names]))
        else:
            suites.append(Suite(name, tools, [target]))
    # Many more examples for the last step (every step runs them with the usual
    # number in make test): the steps before it differ little, and make ci has 45
    # minutes on two cores.
    with_properties = [
        step.name
        for step in all_steps()
        if (step.path / "chat" / "test_protocol_properties.py").exists()
    ]
    thorough_steps = set(with_properties[-1:])
    for step in all_steps():
        if step.name in thorough_steps:
            suites.append(
                Suite(
                    f"{step.name}[thorough hypothesis]",
                    step.path,
                    [
                        "chat/test_protocol_properties.py",
                        "--hypothesis-profile=thorough",
                    ],
                )
            )
    return suites


def last_step_databases() -> dict[str, list[str]]:
    """The pytest options that run the last step on its other database, in make ci's
    standalone stage: one run then shows both that the step stands alone and that it
    works on PostgreSQL (make test runs it on SQLite). The steps before it that name
    other databases differ from it in a few files; `make test-stepN` runs any step
    on each of its databases."""
    last = all_steps()[-1]
    databases = (lesson_setting(last, "test_databases") or "").split()[1:]
    return {last.name: [f"--database={database}" for database in databases[:1]]}


def bench_quick() -> int:
    from workshop.bench.run import main as bench_main

    return bench_main(["--quick"])


def workspace_command(args) -> int:
    from workshop import diy

    if args.command == "start":
        return diy.start(args.step, args.force)
    if args.command == "check":
        return diy.check(args.step, args.details, args.quick)
    if args.command == "compare":
        return diy.compare(args.step, sys.stdout.isatty(), args.all)
    if args.command == "run":
        step = diy.target_step(None)
        if not (diy.WORKSPACE / "manage.py").exists():
            raise WorkspaceError("workspace/ has no manage.py yet: see `make start`.")
        return serve(str(step.number), args.host, args.port, folder=diy.WORKSPACE)
    return diy.manage(args.arguments, admin=args.command == "admin")


def last_step_with(setting: str) -> Step:
    steps = [step for step in all_steps() if lesson_setting(step, setting)]
    if not steps:
        raise UserError(f"No step has `{setting}` in lessons.ini.")
    return steps[-1]


if __name__ == "__main__":
    sys.exit(main())
