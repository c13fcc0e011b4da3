"""The lesson manifest (lessons.ini) and the checks that keep steps from drifting.

`make check-steps` runs check_all(): every step changes only the files its lesson
names, and at most max_changed_code_lines lines of code; every step README has the
shared skeleton; a refactor step keeps the previous step's tests; the generated
diffs in notes/diffs/ are fresh; code quoted in a README under a file-path comment
equals that file; the README's protocol tables list exactly the frames and codes of
chat/protocol.py; each step's requirements.txt agrees with the top-level one; and no
file in a step refers to the workshop's own tooling.
"""

import ast
import configparser
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

from workshop.diffs import read_lines, step_diff
from workshop.file_kinds import counts_in_lesson_size, is_test_file
from workshop.steps import MANIFEST, ROOT, STEP_FOLDER, Step, all_steps

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
        if not STEP_FOLDER.fullmatch(section):
            continue
        kind = parser.get(section, "kind", fallback="feature")
        values = {key: parser.get(section, key) for key in parser.options(section)}
        files = {key for key, value in values.items() if value is None}
        settings = {key: value for key, value in values.items() if value is not None}
        settings.pop("kind", None)
        lessons[section] = Lesson(section, kind, files, settings)
    return lessons


def workshop_settings(root: Path = ROOT) -> dict[str, str]:
    """The [workshop] section of lessons.ini: limits that hold for every lesson."""
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("=",))
    parser.read(root / MANIFEST, encoding="utf-8")
    return dict(parser["workshop"]) if parser.has_section("workshop") else {}


def changed_code_lines(old: Step, new: Step) -> dict[str, int]:
    """For each file that differs and counts in a lesson's size (see
    workshop.file_kinds.counts_in_lesson_size): lines added plus lines removed."""
    counts = {}
    for name in changed_files(old, new):
        if not counts_in_lesson_size(name):
            continue
        diff = difflib.unified_diff(
            read_lines(old.path / name), read_lines(new.path / name), n=0
        )
        counts[name] = sum(
            1
            for line in diff
            if line[:1] in "+-" and not line.startswith(("+++", "---"))
        )
    return counts


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


def check_lesson_sizes(steps: list[Step], root: Path = ROOT) -> list[str]:
    limit = int(workshop_settings(root).get("max_changed_code_lines", "0") or 0)
    if not limit:
        return [f"{MANIFEST} has no [workshop] max_changed_code_lines"]
    problems = []
    for old, new in zip(steps, steps[1:], strict=False):
        counts = changed_code_lines(old, new)
        total = sum(counts.values())
        if total > limit:
            biggest = sorted(counts.items(), key=lambda item: -item[1])[:3]
            problems.append(
                f"{old.name} -> {new.name} changes {total} lines of code, more than"
                f" the {limit} a lesson may ({MANIFEST}, max_changed_code_lines);"
                " the biggest: "
                + ", ".join(f"{name} {count}" for name, count in biggest)
                + ". Split the lesson in two."
            )
    return problems


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


def check_quoted_code(steps: list[Step], root: Path = ROOT) -> list[str]:
    problems = []
    # A step's README quotes the step's files; a note quotes a step's file by its
    # path from the top of the repository (stepN_name/deploy/release.sh).
    documents = [(step.path / "README.md", step.path, step.name) for step in steps]
    documents += [
        (note, root, note.relative_to(root).parent.as_posix())
        for note in sorted((root / "notes").glob("*.md"))
    ]
    for readme, folder, where in documents:
        if not readme.is_file():
            continue
        for path, first_line, rest in quoted_blocks(readme.read_text(encoding="utf-8")):
            if folder == root and not STEP_FOLDER.fullmatch(path.split("/", 1)[0]):
                continue  # not a step's file
            source = folder / path
            name = f"{where}/{readme.name}"
            if not source.is_file():
                problems.append(f"{name} quotes {path}, which is not there")
                continue
            text = source.read_text(encoding="utf-8")
            # The block may include the file's own first-line comment, or not.
            if (first_line + "\n" + rest) not in text and rest not in text:
                problems.append(
                    f"{name} quotes {path}, but the quote is not in the file (any"
                    f" more): update {name} from {path}"
                )
    return problems


# --- the protocol tables --------------------------------------------------------

# README heading -> the name in chat/protocol.py whose values the table lists.
PROTOCOL_TABLES = {
    "Frames a client sends": "CLIENT_FRAMES",
    "Frames the server sends": "SERVER_FRAMES",
    "Error codes": "ERRORS",
    "Close codes": "CLOSE_CODES",
}
TABLE_KEY = re.compile(r"^\|\s*`([^`]+)`")


def protocol_values(source: str) -> dict[str, set[str]]:
    """The frame types, error codes and close codes protocol.py defines, read from
    its source (the steps' modules all have the same import name)."""
    names, values = {}, {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            names[node.targets[0].id] = node.value
    for wanted in PROTOCOL_TABLES.values():
        if wanted not in names:
            continue
        node = names[wanted]
        if isinstance(node, ast.Dict):
            items = node.keys
        else:
            items = node.elts
        found = set()
        for item in items:
            if isinstance(item, ast.Name):  # CLOSE_LOGIN_REQUIRED = 4401
                item = names[item.id]
            found.add(str(ast.literal_eval(item)))
        values[wanted] = found
    return values


def readme_tables(text: str) -> dict[str, set[str]]:
    """The first column (in backticks) of the table under each protocol heading."""
    tables, current = {}, None
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            current = PROTOCOL_TABLES.get(heading)
            if current:
                tables[current] = set()
        elif current and (key := TABLE_KEY.match(line)):
            tables[current].add(key.group(1))
    return tables


def check_protocol_tables(steps: list[Step]) -> list[str]:
    problems = []
    for step in steps:
        module, readme = step.path / "chat" / "protocol.py", step.path / "README.md"
        if not module.is_file() or not readme.is_file():
            continue
        defined = protocol_values(module.read_text(encoding="utf-8"))
        listed = readme_tables(readme.read_text(encoding="utf-8"))
        for heading, name in PROTOCOL_TABLES.items():
            if name not in defined:
                continue
            if name not in listed:
                problems.append(
                    f"{step.name}/README.md has no table under a heading"
                    f' "{heading}" listing chat/protocol.py\'s {name}'
                )
                continue
            missing = sorted(defined[name] - listed[name])
            extra = sorted(listed[name] - defined[name])
            if missing or extra:
                problems.append(
                    f'{step.name}/README.md, "{heading}": the table does not match'
                    f" chat/protocol.py's {name} (missing: {', '.join(missing) or '-'};"
                    f" not in protocol.py: {', '.join(extra) or '-'})"
                )
    return problems


# --- generated diffs ------------------------------------------------------------


def diff_file_name(old: Step, new: Step) -> str:
    return f"step{old.number}-to-step{new.number}.diff"


def generated_diffs(steps: list[Step]) -> dict[str, str]:
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


# --- what a step may depend on ------------------------------------------------------

PIN = re.compile(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)")
# A step may not refer to the workshop's own tooling (tools/workshop): copied out of
# the repository, it must still run and pass its tests.
WORKSHOP_REFERENCE = re.compile(
    r"(?:\bfrom\s+workshop\b|\bimport\s+workshop\b|\bworkshop\.(?!py\b)\w"
    r"|-p\s+workshop\b|tools/workshop)"
)


def pins(path: Path) -> dict[str, str]:
    """{package name: version} of the `name==version` lines of a requirements file."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = PIN.match(line.strip())
        if match:
            name = re.sub(r"\[.*\]", "", match.group(1)).lower().replace("_", "-")
            found[name] = match.group(2)
    return found


def check_requirements(steps: list[Step], root: Path = ROOT) -> list[str]:
    """Every step pins what it needs; the top-level file pins the same versions of all."""
    problems = []
    top = pins(root / "requirements.txt")
    for step in steps:
        if not (step.path / "requirements.txt").is_file():
            problems.append(f"{step.name} has no requirements.txt")
            continue
        # The step's own, and any other (deploy/requirements.txt: what the image runs).
        for path in sorted(step.path.rglob("requirements*.txt")):
            name_in_step = f"{step.name}/{path.relative_to(step.path).as_posix()}"
            for name, version in pins(path).items():
                if name not in top:
                    problems.append(
                        f"{name_in_step} pins {name}=={version}, which the top-level"
                        " requirements.txt does not have"
                    )
                elif top[name] != version:
                    problems.append(
                        f"{name_in_step} pins {name}=={version}, the top-level"
                        f" requirements.txt {name}=={top[name]}: make them agree"
                    )
    return problems


def check_self_contained(steps: list[Step]) -> list[str]:
    problems = []
    for step in steps:
        for name in step.files():
            try:
                text = (step.path / name).read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            for number, line in enumerate(text.splitlines(), start=1):
                if WORKSHOP_REFERENCE.search(line):
                    problems.append(
                        f"{step.name}/{name}:{number} refers to the workshop's tooling"
                        f" ({line.strip()[:60]}): a step must stand on its own"
                    )
    return problems


def check_all(root: Path = ROOT) -> list[str]:
    steps = all_steps(root)
    lessons = read_manifest(root)
    return (
        check_manifest(steps, lessons)
        + check_lesson_sizes(steps, root)
        + check_readmes(steps)
        + check_quoted_code(steps, root)
        + check_protocol_tables(steps)
        + check_requirements(steps, root)
        + check_self_contained(steps)
        + check_diffs(steps, root)
    )
