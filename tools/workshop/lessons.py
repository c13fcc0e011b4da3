"""The lesson manifest (lessons.ini) and the checks that keep steps from drifting.

`make check-steps` runs check_all(): every step changes only the files its lesson
names; every step README has the shared skeleton; a refactor step keeps the previous
step's tests; the generated diffs in notes/diffs/ are fresh; code quoted in a README
under a file-path comment equals that file.
"""

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path

from workshop.steps import ROOT, Step, all_steps

MANIFEST = "lessons.ini"
KINDS = {"first", "feature", "refactor"}
README_SECTIONS = [
    "Goal",
    "Starts from",
    "What changed",
    "Run it",
    "You should now see",
    "How it works",
    "Troubleshooting",
    "Differences from the official tutorial",
]
DIFFS_FOLDER = Path("notes") / "diffs"


@dataclass
class Lesson:
    step: str
    kind: str
    files: set[str] = field(default_factory=set)
    # Other `key = value` lines: how to run the step (redis = preferred).
    settings: dict[str, str] = field(default_factory=dict)


def read_manifest(root: Path = ROOT) -> dict[str, Lesson]:
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("=",))
    parser.optionxform = str  # file paths are case-sensitive
    parser.read(root / MANIFEST, encoding="utf-8")
    lessons = {}
    for section in parser.sections():
        kind = parser.get(section, "kind", fallback="feature")
        values = {key: parser.get(section, key) for key in parser.options(section)}
        files = {key for key, value in values.items() if value is None}
        settings = {key: value for key, value in values.items() if value is not None}
        settings.pop("kind", None)
        lessons[section] = Lesson(section, kind, files, settings)
    return lessons


def is_test_file(name: str) -> bool:
    file_name = name.rsplit("/", 1)[-1]
    return (
        name.startswith("tests/")
        or file_name == "tests.py"
        or file_name.startswith("test_")
    )


def changed_files(old: Step, new: Step) -> list[str]:
    """Files added, deleted or different (byte for byte) between two steps."""
    names = sorted(set(old.files()) | set(new.files()))
    return [
        name
        for name in names
        if not (old.path / name).is_file()
        or not (new.path / name).is_file()
        or (old.path / name).read_bytes() != (new.path / name).read_bytes()
    ]


def check_manifest(steps: list[Step], lessons: dict[str, Lesson]) -> list[str]:
    problems = []
    for step in steps:
        lesson = lessons.get(step.name)
        if lesson is None:
            problems.append(f"{MANIFEST} has no [{step.name}] section")
        elif lesson.kind not in KINDS:
            problems.append(
                f"[{step.name}] kind = {lesson.kind}: use one of {sorted(KINDS)}"
            )
    for old, new in zip(steps, steps[1:], strict=False):
        lesson = lessons.get(new.name)
        if lesson is None:
            continue
        for name in changed_files(old, new):
            if name not in lesson.files:
                problems.append(
                    f"{new.name}/{name} differs from {old.name}/{name}, but the lesson"
                    f" [{new.name}] in {MANIFEST} does not name it: copy the file from"
                    f" {old.name}, or add it to the lesson"
                )
        if lesson.kind == "refactor":
            for name in changed_files(old, new):
                if is_test_file(name):
                    problems.append(
                        f"{new.name} is a refactor step, so its tests must equal"
                        f" {old.name}'s, but {name} differs"
                    )
    return problems


def readme_sections(text: str) -> list[str]:
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def check_readmes(steps: list[Step]) -> list[str]:
    problems = []
    for step in steps:
        readme = step.path / "README.md"
        if not readme.is_file():
            problems.append(f"{step.name} has no README.md")
            continue
        sections = readme_sections(readme.read_text(encoding="utf-8"))
        missing = [name for name in README_SECTIONS if name not in sections]
        if missing:
            problems.append(
                f"{step.name}/README.md lacks the section(s): {', '.join(missing)}"
            )
        elif [name for name in sections if name in README_SECTIONS] != README_SECTIONS:
            problems.append(
                f"{step.name}/README.md has the skeleton's sections out of order;"
                f" expected: {', '.join(README_SECTIONS)}"
            )
    return problems


# --- code quoted in READMEs -----------------------------------------------------

FENCE = re.compile(r"^( *)```[^\n]*\n(.*?)^\1```", re.MULTILINE | re.DOTALL)
PATH_COMMENT = re.compile(r"^(?:#|<!--|//)\s*([\w./-]+\.\w+)\s*(?:-->)?\s*$")


def quoted_blocks(readme_text: str):
    """(path, first line, rest) for each fenced block whose first line is a path comment.

    A block indented under a list item is dedented by its fence's indentation.
    """
    for match in FENCE.finditer(readme_text):
        indent = len(match.group(1))
        code = "".join(
            line[indent:] if line.strip() else "\n"
            for line in match.group(2).splitlines(keepends=True)
        )
        first_line, _, rest = code.partition("\n")
        path = PATH_COMMENT.match(first_line.strip())
        if path:
            yield path.group(1), first_line, rest


def check_quoted_code(steps: list[Step]) -> list[str]:
    problems = []
    for step in steps:
        readme = step.path / "README.md"
        if not readme.is_file():
            continue
        for path, first_line, rest in quoted_blocks(readme.read_text(encoding="utf-8")):
            source = step.path / path
            if not source.is_file():
                problems.append(
                    f"{step.name}/README.md quotes {path}, which is not in the step"
                )
                continue
            text = source.read_text(encoding="utf-8")
            # The block may include the file's own first-line comment, or not.
            if (first_line + "\n" + rest) not in text and rest not in text:
                problems.append(
                    f"{step.name}/README.md quotes {path}, but the quote is not in the"
                    f" file (any more): update the README from {step.name}/{path}"
                )
    return problems


# --- generated diffs ------------------------------------------------------------


def diff_file_name(old: Step, new: Step) -> str:
    return f"step{old.number}-to-step{new.number}.diff"


def generated_diffs(steps: list[Step]) -> dict[str, str]:
    from workshop.diffs import step_diff

    diffs = {}
    for old, new in zip(steps, steps[1:], strict=False):
        changed, lines = step_diff(old, new)
        header = (
            f"# {old.name} -> {new.name}: {len(changed)} file(s) differ (make diffs)\n"
        )
        body = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        diffs[diff_file_name(old, new)] = header + body
    return diffs


def write_diffs(root: Path = ROOT) -> list[Path]:
    folder = root / DIFFS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    expected = generated_diffs(all_steps(root))
    for stale in folder.glob("*.diff"):
        if stale.name not in expected:
            stale.unlink()
    for name, text in expected.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def check_diffs(steps: list[Step], root: Path = ROOT) -> list[str]:
    folder = root / DIFFS_FOLDER
    problems = []
    expected = generated_diffs(steps)
    for name, text in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{DIFFS_FOLDER / name} is missing: run make diffs")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{DIFFS_FOLDER / name} is stale: run make diffs")
    for path in folder.glob("*.diff") if folder.is_dir() else []:
        if path.name not in expected:
            problems.append(
                f"{DIFFS_FOLDER / path.name} belongs to no pair of steps: run make diffs"
            )
    return problems


def check_all(root: Path = ROOT) -> list[str]:
    steps = all_steps(root)
    lessons = read_manifest(root)
    return (
        check_manifest(steps, lessons)
        + check_readmes(steps)
        + check_quoted_code(steps)
        + check_diffs(steps, root)
    )
