#!/bin/sh
# Create .venv and install the pinned requirements into it.
# `make` runs this when .venv is missing or requirements.txt has changed; it is
# safe to run again by hand: sh tools/bootstrap.sh
set -eu

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"

if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: '$PYTHON' was not found. Install Python 3.10 or newer, or name one: make <target> PYTHON=python3.12" >&2
    exit 1
fi

# Written so that even an old Python 2 can run it and print its version.
if ! found=$("$PYTHON" -c 'import sys; print("%d.%d.%d" % tuple(sys.version_info[:3]))'); then
    echo "error: '$PYTHON' is there but did not run (a pyenv shim for a version not selected?)." >&2
    echo "       Name the interpreter by its path: make <target> PYTHON=/path/to/python3.12" >&2
    exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
    echo "error: this workshop needs Python 3.10 or newer, but '$PYTHON' is Python $found." >&2
    echo "       Install a newer Python and name it, for example: make <target> PYTHON=python3.12" >&2
    exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "Creating $VENV with Python $found ..."
    if ! "$PYTHON" -m venv "$VENV"; then
        rm -rf "$VENV"
        echo "error: '$PYTHON -m venv' failed. On Debian/Ubuntu: sudo apt install python3-venv" >&2
        exit 1
    fi
fi

echo "Installing the pinned requirements into $VENV (first time: about a minute) ..."
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt

# Make the shared tooling (tools/workshop: test fixtures, step runner) importable
# from every step without copying it into each step folder.
"$VENV/bin/python" - <<'PY'
import pathlib, sysconfig
tools = pathlib.Path("tools").resolve()
site_packages = pathlib.Path(sysconfig.get_paths()["purelib"])
(site_packages / "workshop-tools.pth").write_text(f"{tools}\n")
PY

touch "$VENV/.requirements-installed"
echo "Ready: $VENV"
