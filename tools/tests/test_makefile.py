"""The Makefile as a learner meets it: the commands the READMEs give exist, and a
mistake gets a message that says what to do, never a traceback."""

import os
import re
import socket
import subprocess
import sys

import pytest

from workshop.steps import ROOT, all_steps

DOCUMENTS = [
    ROOT / "README.md",
    *ROOT.glob("step*_*/README.md"),
    *ROOT.glob("notes/*.md"),
]


def make(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def documented_targets() -> set[str]:
    """Every `make <target>` the READMEs and notes tell a reader to type."""
    found = set()
    for document in DOCUMENTS:
        # In `backticks`, or at the start of a line of a code block.
        text = document.read_text()
        found |= set(re.findall(r"(?:`|^)make ([a-z][a-zA-Z0-9-]*)", text, re.M))
    # `make stepN` and `make test-stepN` are one rule each, for every step.
    return {re.sub(r"^(test-)?step(\d+|N)$", r"\1stepN", name) for name in found}


def test_every_make_command_in_the_documents_is_listed_by_make_help():
    listed = set(re.findall(r"^  make (\S+)", make("help").stdout, re.MULTILINE))

    missing = documented_targets() - listed

    assert not missing, f"documented but not in `make help`: {sorted(missing)}"


def test_a_step_that_does_not_exist_names_the_steps_there_are():
    result = make("step9")

    assert result.returncode != 0
    steps = " ".join(str(step.number) for step in all_steps())
    assert f'There is no step "9". The steps are: {steps}.' in result.stderr
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


@pytest.mark.parametrize("value", ["abc", "70000"])
def test_a_port_that_is_not_a_port_is_refused_with_the_range(value):
    result = make("step1", f"PORT={value}")

    assert result.returncode != 0
    assert f"PORT must be a number from 1 to 65535, not '{value}'" in result.stderr


def bootstrap_with_stand_in(tmp_path, name: str, script: str):
    """Run tools/bootstrap.sh with PYTHON set to a stand-in interpreter (a shell script)."""
    python = tmp_path / name
    python.write_text(f"#!/bin/sh\n{script}\n")
    python.chmod(0o755)
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["sh", "tools/bootstrap.sh"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": str(python), "VENV": str(venv)},
    )
    return python, venv, result


def test_a_python_older_than_3_10_says_which_version_it_found(tmp_path):
    # It answers bootstrap.sh's two questions (the version, then "is it at least
    # 3.10?") as Python 3.9.18 would.
    old_python, venv, result = bootstrap_with_stand_in(
        tmp_path,
        "python3.9",
        'case "$2" in *sys.exit*) exit 1 ;; *) echo 3.9.18 ;; esac',
    )

    assert result.returncode != 0
    assert (
        f"error: this workshop needs Python 3.10 or newer, but '{old_python}' is"
        " Python 3.9.18." in result.stderr
    )
    assert "PYTHON=python3.12" in result.stderr
    assert not venv.exists(), "nothing is created with the wrong Python"


def test_a_python_that_is_there_but_does_not_run_is_named(tmp_path):
    # Like a pyenv shim of a version that is installed but not selected.
    shim, venv, result = bootstrap_with_stand_in(
        tmp_path,
        "python3.10",
        "echo 'pyenv: python3.10: command not found' >&2; exit 127",
    )

    message = "is there but did not run (a pyenv shim for a version not selected?)."
    assert result.returncode != 0
    assert f"error: '{shim}' {message}" in result.stderr
    assert message in (ROOT / "notes" / "troubleshooting.md").read_text()
    assert "PYTHON=/path/to/python3.12" in result.stderr
    assert not venv.exists()


def test_a_python_named_on_the_command_line_gets_a_virtualenv_of_its_own():
    # Otherwise an existing .venv would silently keep the Python it was made with.
    version = "{}.{}".format(*sys.version_info[:2])

    # Not the variables of the `make test` these tests may be running under.
    clean = {
        name: value
        for name, value in os.environ.items()
        if name not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "PYTHON", "VENV"}
    }

    def dry_run(*arguments: str) -> str:
        command = ["make", "--no-print-directory", "--dry-run", "test", *arguments]
        return subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, env=clean, timeout=60
        ).stdout

    named = dry_run(f"PYTHON={sys.executable}")
    default = dry_run()

    assert f".venv-{version}/bin/python -m workshop.cli test" in named
    assert "\n.venv/bin/python -m workshop.cli test" in "\n" + default
