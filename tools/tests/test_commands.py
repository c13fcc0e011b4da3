"""The commands as a learner meets them, with make and without: the ones the
documents give exist, a mistake gets a message that says what to do (never a
traceback), a Python is chosen once, and stopping a server with Ctrl+C looks normal."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from workshop.cli import find_python
from workshop.steps import ROOT, all_steps

DOCUMENTS = [
    ROOT / "README.md",
    *ROOT.glob("step*_*/README.md"),
    *ROOT.glob("notes/*.md"),
]
# Not the variables of a `make test` these tests may be running under.
CLEAN = {
    name: value
    for name, value in os.environ.items()
    if name not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON", "WORKSHOP_VENV"}
}


def make(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**CLEAN, **(env or {})},
        timeout=300,
    )


def workshop(*arguments: str, python: str = sys.executable, env: dict | None = None):
    return subprocess.run(
        [python, "workshop.py", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**CLEAN, **(env or {})},
        timeout=600,
    )


def normalise(name: str) -> str:
    """`make step7-workers` and `make stepN-workers` are one rule."""
    return re.sub(r"step(\d+|N)", "stepN", name)


def documented(pattern: str) -> set[str]:
    found = set()
    for document in DOCUMENTS:
        found |= set(re.findall(pattern, document.read_text(), re.MULTILINE))
    return {normalise(name) for name in found}


def test_every_make_command_in_the_documents_is_listed_by_make_help():
    listed = {
        normalise(n) for n in re.findall(r"^  make (\S+)", make("help").stdout, re.M)
    }

    missing = documented(r"(?:`|^)make ([a-z][a-zA-Z0-9-]*)") - listed

    assert not missing, f"documented but not in `make help`: {sorted(missing)}"


def test_every_make_command_has_a_form_without_make():
    help_text = workshop("help").stdout
    commands = re.findall(r"without make: python workshop\.py (\S+)", help_text)
    targets = re.findall(r"^  make (\S+)", help_text, re.MULTILINE)

    assert len(commands) == len(targets) > 10
    missing = documented(r"python workshop\.py ([a-z][a-z-]*)") - set(commands)
    assert not missing, f"documented but not in the help: {sorted(missing)}"


@pytest.mark.parametrize("form", ["make", "python"])
def test_a_step_that_does_not_exist_names_the_steps_there_are(form):
    result = make("step99") if form == "make" else workshop("step", "99")

    assert result.returncode != 0
    steps = ", ".join(f"{step.number} ({step.name})" for step in all_steps())
    assert f'There is no step "99". The steps are: {steps}.' in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_port_in_use_says_which_and_how_to_pick_another():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = make("step2", f"PORT={port}")

    assert result.returncode != 0
    assert f"Port {port} is already in use on 127.0.0.1" in result.stderr
    assert f"make step2 PORT={port + 1}" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_without_make_a_port_in_use_is_answered_with_the_python_form():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = workshop("step", "2", "--port", str(port))

    assert result.returncode != 0
    assert f"python workshop.py step 2 --port {port + 1}" in result.stderr
    assert "make" not in result.stderr


@pytest.mark.parametrize("value", ["abc", "70000"])
def test_a_port_that_is_not_a_port_is_refused_with_the_range(value):
    result = make("step1", f"PORT={value}")

    assert result.returncode != 0
    assert f"PORT must be a number from 1 to 65535, not '{value}'" in result.stderr
    # One line, not argparse's usage before it.
    assert result.stderr.splitlines()[0].startswith("error: argument --port")


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["step0"], 'There is no step "0"'),  # as make spells it: step 0
        (["step99-stack"], 'There is no step "99"'),
        (["stepx"], "invalid choice: 'stepx' (the commands: python workshop.py help)"),
    ],
)
def test_a_wrong_command_without_make_gets_one_line(arguments, message):
    result = workshop(*arguments)

    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr


def stand_in(tmp_path, name: str, script: str) -> str:
    """A stand-in interpreter: a shell script that answers as it is told."""
    python = tmp_path / name
    python.write_text(f"#!/bin/sh\n{script}\n")
    python.chmod(0o755)
    return str(python)


@pytest.mark.parametrize("asked", [[], ["help"], ["--help"], ["-h"]])
def test_help_needs_no_virtualenv(tmp_path, asked):
    venv = tmp_path / "venv"

    if asked:
        result = workshop(*asked, env={"WORKSHOP_VENV": str(venv)})
    else:
        result = make(env={"WORKSHOP_VENV": str(venv)})

    assert result.returncode == 0, result.stderr
    assert "make start STEP=N" in result.stdout
    assert "No venv yet: the first command makes it" in result.stdout
    assert not venv.exists()


PYTHON_2 = """\
# Like Python 2: it tells its version, and cannot even read workshop.py.
if [ "$1" = "-c" ]; then echo 2.7.18; exit 0; fi
echo '    print(f"Creating {venv.name} ...")' >&2
echo 'SyntaxError: invalid syntax' >&2
exit 1"""


@pytest.mark.parametrize("form", ["make", "python"])
def test_a_python_that_cannot_run_the_workshop_gets_the_same_message_with_make(
    form, tmp_path
):
    python_2 = stand_in(tmp_path, "python2", PYTHON_2)
    missing = "python3.99"
    env = {"WORKSHOP_VENV": str(tmp_path / "venv")}

    def run(python):
        if form == "make":
            return make("help", f"PYTHON={python}", env=env)
        return workshop("--python", python, "help", env=env)

    old, absent = run(python_2), run(missing)

    assert old.returncode != 0 and absent.returncode != 0
    assert (
        f"error: this workshop needs Python 3.10 or newer, but '{python_2}' is Python"
        " 2.7.18." in old.stderr
    )
    assert f"error: '{missing}' was not found." in absent.stderr
    for result in (old, absent):
        assert "SyntaxError" not in result.stderr
        assert "exec:" not in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "venv").exists()


def test_make_finds_a_python_called_python_where_there_is_no_python3(tmp_path):
    only_python = tmp_path / "bin"
    only_python.mkdir()
    (only_python / "python").symlink_to(sys.executable)

    result = subprocess.run(
        [shutil.which("make"), "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**CLEAN, "PATH": str(only_python)},
        timeout=300,
    )

    assert result.returncode == 0, result.stderr
    assert "make start STEP=N" in result.stdout


def test_a_python_older_than_3_10_says_which_version_it_found(tmp_path):
    old = stand_in(tmp_path, "python3.9", "echo 3.9.18")

    result = workshop(
        "--python", old, "help", env={"WORKSHOP_VENV": str(tmp_path / "venv")}
    )

    assert result.returncode != 0
    assert (
        f"error: this workshop needs Python 3.10 or newer, but '{old}' is Python"
        " 3.9.18." in result.stderr
    )
    assert "PYTHON=python3.12" in result.stderr
    assert not (tmp_path / "venv").exists(), "nothing is made with the wrong Python"


def test_an_old_python_running_workshop_py_itself_says_so(tmp_path):
    old = find_python("3.9") or find_python("3.8")
    if old is None:
        pytest.skip("no Python 3.8 or 3.9 here to try")

    result = workshop("help", python=old, env={"WORKSHOP_VENV": str(tmp_path / "v")})

    assert result.returncode != 0
    assert "this workshop needs Python 3.10 or newer" in result.stderr


def test_a_python_that_is_there_but_does_not_run_is_named(tmp_path):
    # Like a pyenv shim of a version that is installed but not selected.
    shim = stand_in(
        tmp_path,
        "python3.10",
        "echo 'pyenv: python3.10: command not found' >&2; exit 127",
    )

    result = workshop(
        "--python", shim, "help", env={"WORKSHOP_VENV": str(tmp_path / "v")}
    )

    message = "is there but did not run (a pyenv shim for a version not selected?)."
    assert result.returncode != 0
    assert f"error: '{shim}' {message}" in result.stderr
    assert message in (ROOT / "notes" / "troubleshooting.md").read_text()
    assert not (tmp_path / "v").exists()


def test_a_python_is_chosen_once_and_later_commands_use_it(tmp_path):
    other = find_python("3.12") or find_python("3.13") or find_python("3.10")
    if other is None:
        pytest.skip("no second Python here to choose")
    venv = {"WORKSHOP_VENV": str(tmp_path / "venv")}
    version = subprocess.run(
        [other, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()

    chosen = workshop("--python", other, "help", env=venv)
    later = workshop("help", env=venv)  # run by another Python, naming none

    assert f"Creating venv with Python {version}" in chosen.stdout, chosen.stderr
    assert f"Python {version} in venv" in later.stdout
    assert "Creating" not in later.stdout

    mine = workshop("--python", sys.executable, "help", env=venv)
    assert f"venv has Python {version}; you named Python" in mine.stdout
    assert f"Python {sys.version.split()[0]} in venv" in mine.stdout


@pytest.mark.parametrize("form", ["make", "python"])
def test_ctrl_c_stops_a_server_normally(form, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = (
        ["make", "--no-print-directory", "step1", f"PORT={port}"]
        if form == "make"
        else [sys.executable, "workshop.py", "step", "1", "--port", str(port)]
    )
    output = tmp_path / "output.txt"
    with open(output, "w") as log:
        # A terminal sends Ctrl+C to its whole foreground process group.
        server = subprocess.Popen(
            command, cwd=ROOT, env=CLEAN, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "Quit the server with CONTROL-C" not in output.read_text():
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.2)
            os.killpg(server.pid, signal.SIGINT)
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                os.killpg(server.pid, signal.SIGKILL)

    text = output.read_text()
    assert "Stopped." in text
    assert "make: ***" not in text and "Interrupt" not in text, text
    assert "Traceback" not in text
    if form == "python":
        assert server.returncode == 0


def test_the_stack_starts_serves_through_nginx_and_stops_on_ctrl_c(tmp_path):
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    output = tmp_path / "output.txt"
    with open(output, "w") as log:
        stack = subprocess.Popen(
            [sys.executable, "workshop.py", "stack", str(all_steps()[-1].number), "--port", str(port)],
            cwd=ROOT, env=CLEAN, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while "The chat, through nginx" not in output.read_text():
                assert stack.poll() is None, output.read_text()
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.3)
            url = f"http://127.0.0.1:{port}/static/chat/chat.css"
            with urllib.request.urlopen(url, timeout=10) as css:
                assert css.headers["Server"].startswith("nginx")
            os.killpg(stack.pid, signal.SIGINT)
            stack.wait(timeout=60)
        finally:
            if stack.poll() is None:
                os.killpg(stack.pid, signal.SIGKILL)

    assert stack.returncode == 0, output.read_text()
    assert "Stopped." in output.read_text()
    with pytest.raises(OSError):  # nginx is gone
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_the_stack_says_how_many_sockets_each_app_server_holds(capsys):
    from workshop import stack_watch

    # An "app server": a process of the stack, named uvicorn, listening on a port.
    listener = (
        "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 0));"
        " s.listen(); print(s.getsockname()[1], flush=True);"
        " held = [s.accept()[0] for _ in range(2)]; time.sleep(600)"
    )
    stack = subprocess.Popen(
        [sys.executable, "-c", listener, "uvicorn"],
        stdout=subprocess.PIPE,
        text=True,
    )
    stop = threading.Event()
    clients = []
    try:
        port = int(stack.stdout.readline())
        app_server = psutil.Process(stack.pid)
        watcher = threading.Thread(
            target=stack_watch.watch, args=(os.getpid(), stop, 0.1), daemon=True
        )
        assert port in stack_watch.app_server_ports(os.getpid())
        watcher.start()
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        said = wait_for_output(capsys, f"port {port}: 2 sockets")
        app_server.kill()
        said += wait_for_output(capsys, "is gone")
    finally:
        stop.set()
        stack.kill()
        stack.wait()
        for client in clients:
            client.close()

    assert f"(App servers: port {port}: 2 sockets.)" in said
    assert f"(The app server on port {port} is gone: it held 2 sockets.)" in said


def wait_for_output(capsys, text, limit=30):
    said, deadline = "", time.monotonic() + limit
    while text not in said:
        assert time.monotonic() < deadline, said
        time.sleep(0.05)
        said += capsys.readouterr().out
    return said


# --- stopping a server: whichever of its processes is told ---------------------------

# The processes of `make step1`, each the child of the one before it.
SERVER_CHAIN = [
    "make",
    "workshop.py",
    "workshop.py in .venv",
    "workshop.guard",
    "runserver",
    "runserver's reloaded server",
]


def gone(process) -> bool:
    import psutil

    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def started():
    """The processes a test started: whatever of them is left is killed after it."""
    processes = []
    yield processes
    for process in processes:
        if not gone(process):
            process.kill()


def start_the_chain(tmp_path, port: int, started: list):
    """make step1 on the port, until its server listens; with its processes."""
    import psutil

    output = tmp_path / "output.txt"
    with open(output, "w") as log:
        top = subprocess.Popen(
            ["make", "--no-print-directory", "step1", f"PORT={port}"],
            cwd=ROOT, env=CLEAN, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    started.append(psutil.Process(top.pid))
    try:
        deadline = time.monotonic() + 120
        while "Quit the server with CONTROL-C" not in output.read_text():
            assert top.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
    finally:
        started.extend(started[0].children(recursive=True))
    chain = [started[0]]
    while len(chain) < len(SERVER_CHAIN):
        children = chain[-1].children()
        assert len(children) == 1, (SERVER_CHAIN[len(chain) - 1], children)
        chain.append(children[0])
    assert not chain[-1].children()
    return top, chain, output


def a_free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_all_gone(chain, top):
    deadline = time.monotonic() + 60
    while not all(gone(process) for process in chain):
        if time.monotonic() > deadline:
            left = [SERVER_CHAIN[i] for i, p in enumerate(chain) if not gone(p)]
            pytest.fail(f"still running: {left}")  # the fixture kills them
        time.sleep(0.2)
    top.wait(timeout=10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux signals")
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("told", range(len(SERVER_CHAIN)), ids=SERVER_CHAIN)
def test_ctrl_c_or_sigterm_to_any_process_of_a_server_stops_all_of_it(
    told, signal_name, tmp_path, started
):
    port = a_free_port()
    top, chain, output = start_the_chain(tmp_path, port, started)

    chain[told].send_signal(getattr(signal, signal_name))

    wait_until_all_gone(chain, top)
    text = output.read_text()
    assert "Stopped." in text
    assert "Traceback" not in text
    with pytest.raises(OSError):  # nothing listens on the port any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux signals")
@pytest.mark.parametrize("killed", range(3), ids=SERVER_CHAIN[:3])
def test_a_server_does_not_outlive_the_command_that_started_it(
    killed, tmp_path, started
):
    port = a_free_port()
    top, chain, output = start_the_chain(tmp_path, port, started)

    chain[killed].kill()  # SIGKILL: no chance to stop anything itself

    wait_until_all_gone(chain, top)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_hypothesis_keeps_its_files_out_of_the_steps(monkeypatch):
    from workshop.testrun import environment

    monkeypatch.delenv("HYPOTHESIS_STORAGE_DIRECTORY", raising=False)
    assert environment("step9_presence")["HYPOTHESIS_STORAGE_DIRECTORY"] == str(
        ROOT / "build" / "hypothesis" / "step9_presence"
    )
    monkeypatch.setenv("HYPOTHESIS_STORAGE_DIRECTORY", "/somewhere/of/yours")
    assert (
        environment("step9_presence")["HYPOTHESIS_STORAGE_DIRECTORY"]
        == "/somewhere/of/yours"
    )
