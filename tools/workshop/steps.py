"""Find the step folders: a step is a folder `stepN_name/` holding a manage.py.

Adding a step to the workshop is adding such a folder; nothing here lists them.
"""

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEP_FOLDER = re.compile(r"step(\d+)_\w+")

# Files that belong to a learner's machine, not to a lesson: never compared or shipped.
IGNORED_NAMES = {
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".venv",
    "test-artifacts",
    ".DS_Store",
}
IGNORED_SUFFIXES = (
    ".pyc",
    ".sqlite3",
    ".sqlite3-journal",
    ".sqlite3-wal",
    ".sqlite3-shm",
)


@dataclass(frozen=True)
class Step:
    number: int
    path: Path

    @property
    def name(self) -> str:
        return self.path.name

    def files(self) -> list[str]:
        """Paths (relative to the step folder) of the files that make up the step."""
        found = []
        for path in sorted(self.path.rglob("*")):
            relative = path.relative_to(self.path)
            if path.is_dir() or is_ignored(relative):
                continue
            found.append(relative.as_posix())
        return found


def is_ignored(relative: Path) -> bool:
    return any(
        part in IGNORED_NAMES for part in relative.parts
    ) or relative.name.endswith(IGNORED_SUFFIXES)


def all_steps(root: Path = ROOT) -> list[Step]:
    steps = []
    for path in root.iterdir():
        match = STEP_FOLDER.fullmatch(path.name)
        if match and (path / "manage.py").is_file():
            steps.append(Step(int(match.group(1)), path))
    return sorted(steps, key=lambda step: step.number)


def describe_steps(root: Path = ROOT) -> str:
    return ", ".join(f"{step.number} ({step.name})" for step in all_steps(root))


class NoSuchStep(Exception):
    pass


def find_step(number: str | int, root: Path = ROOT) -> Step:
    for step in all_steps(root):
        if str(step.number) == str(number).strip():
            return step
    raise NoSuchStep(
        f'There is no step "{number}". The steps are: {describe_steps(root)}.'
    )
