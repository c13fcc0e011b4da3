"""The steps: the folders that lessons.ini names, in its order.

A step is a folder `stepN_name/` holding a manage.py and named by a section of
lessons.ini. Any other folder (a learner's copy such as `step3_mine/`, the learner's
`workspace/`) is not a step, whatever its name.
"""

import configparser
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = "lessons.ini"
STEP_FOLDER = re.compile(r"step(\d+)_\w+")

# Files that belong to a machine, not to a lesson: never compared, copied or shipped.
IGNORED_NAMES = {
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    ".venv",
    "test-artifacts",
    "staticfiles",
    ".DS_Store",
    ".workshop.json",  # workspace/'s own record (tools/workshop/diy.py)
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
        return project_files(self.path)


def project_files(folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_dir() or is_ignored(relative):
            continue
        found.append(relative.as_posix())
    return found


def is_ignored(relative: Path) -> bool:
    return any(
        part in IGNORED_NAMES for part in relative.parts
    ) or relative.name.endswith(IGNORED_SUFFIXES)


def manifest_sections(root: Path = ROOT) -> list[str]:
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("=",))
    parser.optionxform = str
    parser.read(root / MANIFEST, encoding="utf-8")
    return parser.sections()


def all_steps(root: Path = ROOT) -> list[Step]:
    steps = []
    for section in manifest_sections(root):
        match = STEP_FOLDER.fullmatch(section)
        if match and (root / section / "manage.py").is_file():
            steps.append(Step(int(match.group(1)), root / section))
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


def previous_step(step: Step, root: Path = ROOT) -> Step | None:
    earlier = [other for other in all_steps(root) if other.number < step.number]
    return earlier[-1] if earlier else None


def step_named(name: str, root: Path = ROOT) -> Step:
    """The step in the folder `name` (a data table keyed by folder names finds its
    steps so, and says so clearly when one has gone)."""
    for step in all_steps(root):
        if step.name == name:
            return step
    raise NoSuchStep(
        f'There is no step folder "{name}". The steps are: {describe_steps(root)}.'
    )


def steps_with(name: str, root: Path = ROOT) -> list[Step]:
    """The steps that have the file `name` (a path in the step folder), in order."""
    return [step for step in all_steps(root) if (step.path / name).is_file()]


def tutorial_consumer_steps(root: Path = ROOT) -> tuple[Step, Step]:
    """(the step of the tutorial's synchronous consumer, the step of its asynchronous
    rewrite): the first two steps with a chat/consumers.py."""
    first, second = steps_with("chat/consumers.py", root)[:2]
    return first, second


def tutorial_tests_step(root: Path = ROOT) -> Step:
    """The step of the tutorial's tests (part 4): the first with a chat/tests.py."""
    return steps_with("chat/tests.py", root)[0]
