"""pytest loads this file before the tests: the fixtures they share.

- step_dir: this step's folder, where manage.py is.
"""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def step_dir() -> Path:
    return Path(__file__).resolve().parent
