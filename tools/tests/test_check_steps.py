"""make check-steps catches drift: each test breaks a copy of the steps one way.

The steps are found from lessons.ini, never named here, so that the tests hold
whatever the steps are. The lesson-size limit is tested on a small workshop made
for it, whose sizes are known.
"""

import ast
import fnmatch
import shutil
from pathlib import Path

import pytest

from workshop.checkpoints import lesson_checks
from workshop.file_kinds import is_code, is_test_module
from workshop.lessons import (
    MANIFEST,
    check_all,
    check_lesson_sizes,
    diff_file_name,
    pins,
    read_manifest,
    write_diffs,
)
from workshop.steps import ROOT, all_steps


@pytest.fixture
def workshop_copy(tmp_path) -> Path:
    """The steps, the manifest, the requirements and the generated diffs, copied to a
    scratch folder."""
    for step in all_steps():
        for name in step.files():
            target = tmp_path / step.name / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(step.path / name, target)
    for name in (MANIFEST, "requirements.txt"):
        shutil.copyfile(ROOT / name, tmp_path / name)
    write_diffs(tmp_path)
    return tmp_path


def problems_but_the_sizes(root: Path = ROOT) -> list[str]:
    """Every check's problems, less the lesson sizes' (tested below on their own)."""
    sizes = set(check_lesson_sizes(all_steps(root), root))
    return [problem for problem in check_all(root) if problem not in sizes]


def test_the_steps_as_committed_pass():
    assert problems_but_the_sizes() == []


def test_the_copy_passes(workshop_copy):
    assert problems_but_the_sizes(workshop_copy) == []


def code_file_its_lesson_leaves_alone(root: Path):
    """(step, the step before it, a code file the step's lesson does not name)."""
    steps, lessons = all_steps(root), read_manifest(root)
    for old, new in zip(steps, steps[1:], strict=False):
        for name in new.files():
            if (
                name.endswith(".py")
                and is_code(name)
                and (old.path / name).is_file()
                and name not in lessons[new.name].files
            ):
                return new, old, name
    raise AssertionError("every lesson changes every code file")


def test_a_file_edited_outside_its_lesson_is_reported(workshop_copy):
    step, before, name = code_file_its_lesson_leaves_alone(workshop_copy)
    edited = step.path / name
    edited.write_text(edited.read_text() + "\n# an edit that is not in the lesson\n")

    problems = check_all(workshop_copy)

    assert any(
        f"{step.name}/{name} differs from {before.name}/{name}" in p for p in problems
    ), problems


def test_a_file_added_outside_its_lesson_is_reported(workshop_copy):
    step = all_steps(workshop_copy)[-1]
    (step.path / "chat" / "helpers.py").write_text("X = 1\n")

    problems = check_all(workshop_copy)

    assert any(f"{step.name}/chat/helpers.py" in p for p in problems), problems


def test_a_refactor_step_that_changes_its_tests_is_reported(workshop_copy):
    lessons = read_manifest(workshop_copy)
    step = next(
        s for s in all_steps(workshop_copy) if lessons[s.name].kind == "refactor"
    )
    name = next(name for name in step.files() if is_test_module(name))
    manifest = workshop_copy / MANIFEST
    # The lesson names the file: the refactor rule alone must catch it.
    manifest.write_text(
        manifest.read_text().replace(f"[{step.name}]\n", f"[{step.name}]\n{name}\n")
    )
    test_file = step.path / name
    test_file.write_text(test_file.read_text() + "\n\ndef test_extra():\n    pass\n")

    problems = check_all(workshop_copy)

    assert any(
        f"{step.name} is a refactor step, so its tests must equal" in p and name in p
        for p in problems
    ), problems
    assert not any(f"{step.name}/{name} differs" in p for p in problems), problems


def test_a_readme_without_the_skeleton_is_reported(workshop_copy):
    step = all_steps(workshop_copy)[0]
    readme = step.path / "README.md"
    readme.write_text(readme.read_text().replace("## Troubleshooting", "## Problems"))

    problems = check_all(workshop_copy)

    assert any(
        f"{step.name}/README.md lacks the section(s): Troubleshooting" in p
        for p in problems
    ), problems


def test_stale_generated_diffs_are_reported(workshop_copy):
    first, second = all_steps(workshop_copy)[:2]
    name = diff_file_name(first, second)
    diff = workshop_copy / "notes" / "diffs" / name
    diff.write_text(diff.read_text() + "+ an old line\n")

    problems = check_all(workshop_copy)

    assert any(f"{name} is stale" in p for p in problems), problems


def test_code_quoted_in_a_readme_must_match_its_file(workshop_copy):
    step = all_steps(workshop_copy)[-1]
    readme = step.path / "README.md"
    readme.write_text(
        readme.read_text()
        + "\n```python\n# chat/consumers.py\nclass ChatConsumer(SomethingElse):\n```\n"
    )

    problems = check_all(workshop_copy)

    assert any(
        f"{step.name}/README.md quotes chat/consumers.py, but the quote is not in"
        " the file" in p
        for p in problems
    ), problems


def test_a_protocol_table_that_disagrees_with_protocol_py_is_reported(workshop_copy):
    step = all_steps(workshop_copy)[-1]
    protocol = step.path / "chat" / "protocol.py"
    # A new error code, which the README's table does not list yet.
    protocol.write_text(
        protocol.read_text().replace(
            "ERRORS = {\n", 'ERRORS = {\n    "brand_new": "Not in the README.",\n'
        )
    )

    problems = check_all(workshop_copy)

    assert any(
        f'{step.name}/README.md, "Error codes": the table does not match' in p
        and "missing: brand_new;" in p
        for p in problems
    ), problems


def test_a_step_that_imports_the_workshops_tooling_is_reported(workshop_copy):
    step = all_steps(workshop_copy)[0]
    manage = step.path / "manage.py"
    manage.write_text("from workshop.ports import free_port\n" + manage.read_text())

    problems = check_all(workshop_copy)

    assert any(
        f"{step.name}/manage.py:1 refers to the workshop's tooling" in p
        for p in problems
    ), problems


def test_a_step_requirement_the_top_level_file_does_not_pin_alike_is_reported(
    workshop_copy,
):
    step = all_steps(workshop_copy)[0]
    requirements = step.path / "requirements.txt"
    requirements.write_text(requirements.read_text() + "Django==0.0.1\n")
    pinned = pins(workshop_copy / "requirements.txt")["django"]

    problems = check_all(workshop_copy)

    assert any(
        f"{step.name}/requirements.txt pins django==0.0.1, the top-level"
        f" requirements.txt django=={pinned}" in p
        for p in problems
    ), problems


def test_a_folder_named_like_a_step_is_not_a_step(workshop_copy):
    step = all_steps(workshop_copy)[-1]
    shutil.copytree(step.path, workshop_copy / f"step{step.number}_mine")

    assert [s.name for s in all_steps(workshop_copy)] == [s.name for s in all_steps()]
    assert problems_but_the_sizes(workshop_copy) == []


# --- the lesson-size limit, on a workshop of two small steps --------------------------

LIMIT = 400


def two_steps(root: Path, before: dict[str, int], after: dict[str, int]) -> list:
    """A workshop whose first step has files of `before` lines ({name: lines}) and
    whose second has files of `after` lines, every line a different one."""
    (root / MANIFEST).write_text(
        f"[workshop]\nmax_changed_code_lines = {LIMIT}\n\n"
        "[step1_before]\nkind = first\n\n"
        "[step2_after]\nkind = feature\n" + "".join(f"{name}\n" for name in after)
    )
    for folder, files in (("step1_before", before), ("step2_after", after)):
        (root / folder).mkdir()
        (root / folder / "manage.py").write_text("# the same in both steps\n")
        for name, lines in files.items():
            path = root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(f"{folder} {n}\n" for n in range(lines)))
    return all_steps(root)


COUNTED = [
    "chat/consumers.py",
    "chat/templates/chat/room.html",
    "chat/static/chat/chat.css",
    "mysite/settings.py",
    "requirements.txt",
    "deploy/docker-compose.yml",
    "deploy/app-server.sh",
    "testsupport/servers.py",
    "conftest.py",
    "pytest.ini",
]
NOT_COUNTED = [
    "README.md",
    "notes/design.md",
    "tests/test_chat.py",
    "tests/__init__.py",
    "chat/tests.py",
    "chat/test_consumers.py",
    "chat/migrations/0001_initial.py",
]


@pytest.mark.parametrize("name", COUNTED)
def test_a_file_a_learner_reads_or_runs_counts_in_the_lesson_size(tmp_path, name):
    steps = two_steps(tmp_path, {}, {name: LIMIT + 1})

    assert check_lesson_sizes(steps, tmp_path) == [
        f"step1_before -> step2_after changes {LIMIT + 1} lines of code, more than"
        f" the {LIMIT} a lesson may ({MANIFEST}, max_changed_code_lines); the"
        f" biggest: {name} {LIMIT + 1}. Split the lesson in two."
    ]


@pytest.mark.parametrize("name", COUNTED)
def test_a_lesson_of_exactly_the_limit_passes(tmp_path, name):
    steps = two_steps(tmp_path, {}, {name: LIMIT})

    assert check_lesson_sizes(steps, tmp_path) == []


@pytest.mark.parametrize("name", NOT_COUNTED)
def test_documentation_test_modules_and_migrations_do_not_count(tmp_path, name):
    steps = two_steps(tmp_path, {}, {name: 10 * LIMIT})

    assert check_lesson_sizes(steps, tmp_path) == []


def test_lines_removed_count_and_every_file_adds_to_the_total(tmp_path):
    # 150 removed from the consumer (and 100 put in), 100 new lines of test support,
    # 51 of fixtures: 401. The tests and the README cost nothing.
    steps = two_steps(
        tmp_path,
        {"chat/consumers.py": 150},
        {
            "chat/consumers.py": 100,
            "testsupport/accounts.py": 100,
            "conftest.py": 51,
            "tests/test_chat.py": 500,
            "README.md": 500,
        },
    )

    assert check_lesson_sizes(steps, tmp_path) == [
        f"step1_before -> step2_after changes 401 lines of code, more than the {LIMIT}"
        f" a lesson may ({MANIFEST}, max_changed_code_lines); the biggest:"
        " chat/consumers.py 250, testsupport/accounts.py 100, conftest.py 51."
        " Split the lesson in two."
    ]


def test_a_manifest_without_the_limit_is_reported(tmp_path):
    steps = two_steps(tmp_path, {}, {})
    manifest = tmp_path / MANIFEST
    manifest.write_text(manifest.read_text().replace("max_changed_code_lines", "x"))

    assert check_lesson_sizes(steps, tmp_path) == [
        f"{MANIFEST} has no [workshop] max_changed_code_lines"
    ]


def the_tests_of(step) -> dict[str, tuple[str, ...]]:
    """The step's test functions: each name, and what the functions of that name
    say (their syntax tree, without positions or comments)."""
    found = {}
    for path in sorted(step.path.rglob("*.py")):
        relative = path.relative_to(step.path).as_posix()
        if ".venv" in path.parts or not is_test_module(relative):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name.startswith("test_"):
                    found[node.name] = (*found.get(node.name, ()), ast.dump(node))
    return found


@pytest.mark.parametrize(
    "before, step",
    [
        (before, step)
        for before, step in zip(all_steps()[:-1], all_steps()[1:], strict=True)
        if step.number >= 5  # after the tutorial, whose tests are its own
    ],
    ids=lambda step: step.name,
)
def test_every_test_new_in_a_lesson_is_one_of_its_checkpoints(before, step):
    # Else `make check` reports its failure as "Everything of the earlier steps
    # still works", and sends the learner to the wrong lesson. A test the lesson
    # rewrote checks what the lesson changed: it is named too.
    tests, earlier = the_tests_of(step), the_tests_of(before)
    new = {name for name, body in tests.items() if earlier.get(name) != body}
    patterns = [
        pattern
        for checkpoint in lesson_checks(step.name).checkpoints
        for pattern in checkpoint.tests
    ]
    unnamed = [
        name
        for name in sorted(new)
        if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
    ]
    assert unnamed == [], f"add them to {step.name}'s checkpoints in checkpoints.py"
