#!/usr/bin/env python3
"""Every workshop command, with or without make:  python workshop.py <command> ...

    python workshop.py help          the commands
    python workshop.py step 2        run step 2 on http://127.0.0.1:8000/chat/
    python workshop.py test          every step's tests

Nothing but Python is needed to start (3.10 or newer, on Linux, macOS or Windows).
The first command creates the virtual environment .venv with the Python that runs
this file (or the one named with --python), installs the pinned requirements into
it, and from then on runs every command inside it. `make <target>` calls this file.
"""

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

# Written for old Pythons too (no newer syntax before this check), so that an old
# interpreter gets this message instead of a SyntaxError.
MINIMUM = (3, 10)
ROOT = Path(__file__).resolve().parent
REQUIREMENTS = ROOT / "requirements.txt"
TOOLS = ROOT / "tools"


def fail(message):
    sys.stderr.write("error: " + message + "\n")
    sys.exit(2)


def version_of(python):
    """'3.12.1' for an interpreter, or None when it does not run."""
    try:
        result = subprocess.run(
            [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def venv_python(venv):
    # Windows keeps a virtualenv's programs in Scripts\, everyone else in bin/.
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def choose_venv():
    """The virtualenv: .venv, or the folder named by WORKSHOP_VENV (CI: one per Python)."""
    named = os.environ.get("WORKSHOP_VENV")
    return (ROOT / named) if named else ROOT / ".venv"


def create_venv(venv, python, found):
    print(f"Creating {venv.name} with Python {found} ...", flush=True)
    if subprocess.run([python, "-m", "venv", str(venv)]).returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        fail(
            f"'{python} -m venv' failed. On Debian/Ubuntu: sudo apt install python3-venv"
        )


def requirements_stamp():
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def install_requirements(venv):
    stamp = venv / ".requirements-installed"
    wanted = requirements_stamp()
    if stamp.is_file() and stamp.read_text().strip() == wanted:
        return
    print(
        f"Installing the pinned requirements into {venv.name} (the first time: about a minute) ...",
        flush=True,
    )
    command = [
        str(venv_python(venv)), "-m", "pip", "install", "--quiet",
        "--disable-pip-version-check", "-r", str(REQUIREMENTS),
    ]  # fmt: skip
    if subprocess.run(command).returncode != 0:
        fail(
            f"installing requirements.txt into {venv.name} failed (see pip's message above)."
        )
    stamp.write_text(wanted + "\n")
    print(f"Ready: {venv.name}", flush=True)


def ensure_venv(requested_python):
    """Create (or re-create, for another Python) the virtualenv; returns its python.

    A Python is chosen once, when the virtualenv is made; later commands use it.
    Naming another one (--python, or PYTHON=... with make) re-creates it.
    """
    venv = choose_venv()
    python = venv_python(venv)
    have = version_of(str(python)) if python.exists() else None
    if requested_python:
        found = version_of(requested_python)
        if found is None:
            if (
                shutil.which(requested_python) is None
                and not Path(requested_python).exists()
            ):
                fail(
                    f"'{requested_python}' was not found. Install Python 3.10 or newer, or name one:"
                    " --python python3.12 (with make: PYTHON=python3.12)"
                )
            fail(
                f"'{requested_python}' is there but did not run (a pyenv shim for a version not"
                " selected?). Name the interpreter by its path: --python"
                " /path/to/python3.12 (with make: PYTHON=/path/to/python3.12)"
            )
        check_version(requested_python, found)
        if have and have != found:
            print(
                f"{venv.name} has Python {have}; you named Python {found}: re-creating {venv.name} with it.",
                flush=True,
            )
            shutil.rmtree(venv)
            have = None
        if not have:
            create_venv(venv, requested_python, found)
    elif not have:
        if python.exists() or venv.exists():
            print(f"{venv.name} is broken (its Python does not run): re-creating it.")
            shutil.rmtree(venv, ignore_errors=True)
        found = ".".join(map(str, sys.version_info[:3]))
        check_version(sys.executable, found)
        create_venv(venv, sys.executable, found)
    install_requirements(venv)
    return venv_python(venv)


def check_version(python, found):
    numbers = tuple(int(part) for part in found.split(".")[:2])
    if numbers < MINIMUM:
        fail(
            f"this workshop needs Python 3.10 or newer, but '{python}' is Python {found}.\n"
            "       Install a newer Python and name it, for example:"
            " python3.12 workshop.py ... (with make: PYTHON=python3.12)"
        )


def split_python_option(arguments):
    """(--python value or None, the other arguments)."""
    rest, python = [], None
    iterator = iter(arguments)
    for argument in iterator:
        if argument == "--python":
            python = next(iterator, None)
            if not python:
                fail("--python needs an interpreter, for example --python python3.12")
        elif argument.startswith("--python="):
            python = argument.split("=", 1)[1]
        else:
            rest.append(argument)
    return python, rest


def run_inside_venv(arguments):
    """Run the command in this process, which is the virtualenv's Python."""
    # Said to this process only: a workshop.py that the command starts (make ci's
    # tests, make test on another Python) chooses its Python afresh.
    os.environ.pop("WORKSHOP_REEXEC", None)
    use_the_tools()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(TOOLS)]
        + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    )
    from workshop.cli import main as cli_main

    sys.exit(cli_main(arguments))


def use_the_tools():
    # tools/ first: there, `workshop` is the tooling's package, not this file.
    sys.path.insert(0, str(TOOLS))


def print_help():
    """The help, with nothing but the standard library: no virtualenv needed."""
    use_the_tools()
    from workshop.commands import help_text

    venv = choose_venv()
    python = venv_python(venv)
    found = version_of(str(python)) if python.exists() else None
    if found:
        said = f"Python {found} in {venv.name}"
    else:
        this = ".".join(map(str, sys.version_info[:3]))
        said = f"No {venv.name} yet: the first command makes it with Python {this}"
    print(help_text(said))


# SIGHUP, SIGINT, SIGQUIT and SIGTERM in a /proc signal mask (bit N-1: signal N).
FATAL_SIGNALS_MASK = sum(1 << (number - 1) for number in (1, 2, 3, 15))
FORWARDED = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
             if hasattr(signal, name)]  # fmt: skip


def make_is_stopping(pid, caught_before):
    """Linux: whether the parent, make, has taken a fatal signal. make waits for its
    recipe's process before it dies of Ctrl+C, and does not pass it on (only SIGTERM):
    its handler is gone once it has run (SigCgt in /proc)."""
    caught = signals_caught(pid)
    return caught is not None and caught & caught_before != caught_before


def signals_caught(pid):
    """The fatal signals (SIGHUP, SIGINT, SIGQUIT, SIGTERM) that a parent which is
    make handles, as a bit mask; None when it is not make, or not on Linux."""
    try:
        with open(f"/proc/{pid}/comm") as comm:
            if comm.read().strip() not in ("make", "gmake"):
                return None
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    return int(line.split(":", 1)[1], 16) & FATAL_SIGNALS_MASK
    except (OSError, ValueError):
        return None
    return None


def watch_the_parent(stop):
    """Call stop(signal) when this process's parent dies, or is make taking Ctrl+C."""
    parent = os.getppid()
    caught_before = signals_caught(parent)

    def watch():
        while True:
            time.sleep(0.2)
            if os.getppid() != parent:
                return stop(signal.SIGTERM)
            if caught_before and make_is_stopping(parent, caught_before):
                return stop(signal.SIGINT)

    threading.Thread(target=watch, daemon=True).start()


def run_passing_signals_on(command, environment):
    """Run the command in the virtualenv; Ctrl+C, SIGTERM or SIGHUP to this process,
    or the end of its parent, reaches it too (once), and it stops its server."""
    process = subprocess.Popen(command, env=environment)
    received = []

    def pass_on(signum, frame=None):
        if received:
            return
        received.append(signum)
        # A Windows console's Ctrl+C reaches every process in it already.
        if os.name != "nt" or signum != signal.SIGINT:
            try:
                process.send_signal(signum)
            except OSError:
                pass

    for signum in FORWARDED:
        signal.signal(signum, pass_on)
    if os.name != "nt":
        watch_the_parent(pass_on)
    returncode = process.wait()
    # Stopped as asked (the command said so itself): 130 and 143 are how a shell
    # reports SIGINT and SIGTERM, 3221225786 is Windows' Ctrl+C.
    if received and returncode in (0, 130, 143, -2, -15, 3221225786):
        returncode = 0
    return returncode


def main():
    requested_python, arguments = split_python_option(sys.argv[1:])
    venv = choose_venv()
    inside = Path(sys.prefix).resolve() == venv.resolve()
    if not requested_python and (inside or os.environ.get("WORKSHOP_REEXEC")):
        if inside:
            install_requirements(venv)
        run_inside_venv(arguments)
    if (
        not requested_python
        and sys.version_info[:2] < MINIMUM
        and not venv_python(venv).exists()
    ):
        check_version(sys.executable, ".".join(map(str, sys.version_info[:3])))
    if (
        not requested_python
        and sys.version_info[:2] >= MINIMUM
        and arguments[:1] in ([], ["help"], ["--help"], ["-h"])
    ):
        return print_help()
    python = ensure_venv(requested_python)
    # Once, not again and again, should that Python not be the virtualenv's.
    environment = dict(os.environ, WORKSHOP_REEXEC="1")
    command = [str(python), str(Path(__file__).resolve()), *arguments]
    sys.exit(run_passing_signals_on(command, environment))


if __name__ == "__main__":
    main()
