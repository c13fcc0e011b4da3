"""make check-steps catches drift: each test breaks a copy of the steps one way."""

import shutil
from pathlib import Path

import pytest

from workshop.lessons import MANIFEST, check_all, write_diffs
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


def test_a_lesson_over_the_size_limit_is_reported(workshop_copy):
    consumers = workshop_copy / "step3_async_chat" / "chat" / "consumers.py"
    consumers.write_text(consumers.read_text() + "# a line\n" * 400)

    problems = check_all(workshop_copy)

    assert any(
        "step2_sync_chat -> step3_async_chat changes" in p
        and "more than the 400 a lesson may" in p
        for p in problems
    ), problems


def test_a_step_that_imports_the_workshops_tooling_is_reported(workshop_copy):
    conftest = workshop_copy / "step2_sync_chat" / "conftest.py"
    conftest.write_text(
        "from workshop.redis_server import ping\n" + conftest.read_text()
    )

    problems = check_all(workshop_copy)

    assert any(
        "step2_sync_chat/conftest.py:1 refers to the workshop's tooling" in p
        for p in problems
    ), problems


def test_a_step_requirement_the_top_level_file_does_not_pin_alike_is_reported(
    workshop_copy,
):
    requirements = workshop_copy / "step1_setup" / "requirements.txt"
    requirements.write_text(
        requirements.read_text().replace("Django==5.2.19", "Django==5.2.1")
    )

    problems = check_all(workshop_copy)

    assert any(
        "step1_setup/requirements.txt pins django==5.2.1, the top-level requirements.txt"
        " django==5.2.19" in p
        for p in problems
    ), problems


def test_a_folder_named_like_a_step_is_not_a_step(workshop_copy):
    shutil.copytree(workshop_copy / "step3_async_chat", workshop_copy / "step3_mine")

    assert [step.name for step in all_steps(workshop_copy)] == [
        step.name for step in all_steps()
    ]
    assert check_all(workshop_copy) == []
