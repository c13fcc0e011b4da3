"""make check-steps catches drift: each test breaks a copy of the steps one way."""

import shutil
from pathlib import Path

import pytest

from workshop.lessons import MANIFEST, check_all, write_diffs
from workshop.steps import ROOT, all_steps


@pytest.fixture
def workshop_copy(tmp_path) -> Path:
    """The steps, the manifest and the generated diffs, copied to a scratch folder."""
    for step in all_steps():
        for name in step.files():
            target = tmp_path / step.name / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(step.path / name, target)
    shutil.copyfile(ROOT / MANIFEST, tmp_path / MANIFEST)
    write_diffs(tmp_path)
    return tmp_path


def test_the_steps_as_committed_pass():
    assert check_all() == []


def test_the_copy_passes(workshop_copy):
    assert check_all(workshop_copy) == []


def test_a_file_edited_outside_its_lesson_is_reported(workshop_copy):
    views = workshop_copy / "step3_async_chat" / "chat" / "views.py"
    views.write_text(views.read_text() + "\n# an edit that is not part of lesson 3\n")

    problems = check_all(workshop_copy)

    assert any(
        "step3_async_chat/chat/views.py differs from step2_sync_chat/chat/views.py" in p
        for p in problems
    ), problems


def test_a_file_added_outside_its_lesson_is_reported(workshop_copy):
    (workshop_copy / "step4_testing" / "chat" / "helpers.py").write_text("X = 1\n")

    problems = check_all(workshop_copy)

    assert any("step4_testing/chat/helpers.py" in p for p in problems), problems


def test_a_refactor_step_that_changes_its_tests_is_reported(workshop_copy):
    manifest = workshop_copy / MANIFEST
    manifest.write_text(
        manifest.read_text().replace(
            "[step3_async_chat]\nkind = refactor\n",
            "[step3_async_chat]\nkind = refactor\ntests/test_chat.py\n",
        )
    )
    test_file = workshop_copy / "step3_async_chat" / "tests" / "test_chat.py"
    test_file.write_text(test_file.read_text() + "\n\ndef test_extra():\n    pass\n")

    problems = check_all(workshop_copy)

    assert any("refactor step, so its tests must equal" in p for p in problems), (
        problems
    )


def test_a_readme_without_the_skeleton_is_reported(workshop_copy):
    readme = workshop_copy / "step1_setup" / "README.md"
    readme.write_text(readme.read_text().replace("## Troubleshooting", "## Problems"))

    problems = check_all(workshop_copy)

    assert any("lacks the section(s): Troubleshooting" in p for p in problems), problems


def test_stale_generated_diffs_are_reported(workshop_copy):
    diff = workshop_copy / "notes" / "diffs" / "step2-to-step3.diff"
    diff.write_text(diff.read_text() + "+ an old line\n")

    problems = check_all(workshop_copy)

    assert any("step2-to-step3.diff is stale" in p for p in problems), problems


def test_code_quoted_in_a_readme_must_match_its_file(workshop_copy):
    readme = workshop_copy / "step3_async_chat" / "README.md"
    readme.write_text(
        readme.read_text()
        + "\n```python\n# chat/consumers.py\nclass ChatConsumer(SomethingElse):\n```\n"
    )

    problems = check_all(workshop_copy)

    assert any(
        "quotes chat/consumers.py, but the quote is not in the file" in p
        for p in problems
    )
