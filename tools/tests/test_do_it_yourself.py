"""make start, make check and make compare, as a learner uses them (without make here:
`python workshop.py ...`, the same commands), each in a workspace of its own."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from workshop.checkpoints import STEPS
from workshop.lessons import read_manifest
from workshop.steps import ROOT, all_steps, find_step

TUTORIAL = ROOT / "tools" / "tests" / "tutorial"


@pytest.fixture
def workspace(tmp_path):
    return tmp_path / "workspace"


def workshop(workspace, *arguments: str) -> subprocess.CompletedProcess:
    environment = {
        **{k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL")},
        "WORKSHOP_WORKSPACE": str(workspace),
    }
    return subprocess.run(
        [sys.executable, "workshop.py", *arguments],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=1800,
    )


def lay_the_lesson_over(step, workspace):
    """Write the step's lesson files into the workspace, as a learner would."""
    for name in read_manifest()[step.name].files:
        source, target = step.path / name, workspace / name
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        elif target.exists():
            target.unlink()  # the lesson deletes it


def failing_titles(output: str) -> list[str]:
    return re.findall(r"^  FAIL  (.+)$", output, re.MULTILINE)


@pytest.mark.parametrize(
    "step", [s for s in all_steps() if s.number > 1], ids=lambda s: s.name
)
def test_a_step_checked_before_and_after_its_lesson(step, workspace):
    started = workshop(workspace, "start", str(step.number))
    assert started.returncode == 0, started.stderr
    assert f"{step.name}/README.md" in started.stdout

    # Before the lesson, only the lesson's own checkpoints (a quick check): a full
    # check runs the earlier lessons' tests too, as the check after the lesson does.
    before = workshop(workspace, "check", "--quick")

    assert before.returncode == 1, before.stdout
    titles = {checkpoint.title for checkpoint in STEPS[step.number].checkpoints}
    assert set(failing_titles(before.stdout)) & titles, before.stdout
    assert "Traceback" not in before.stdout + before.stderr

    lay_the_lesson_over(step, workspace)
    after = workshop(workspace, "check")

    assert after.returncode == 0, after.stdout[-4000:]
    assert f"Step {step.number}: every checkpoint passes." in after.stdout


def test_step_3_before_its_lesson_names_the_synchronous_consumer(workspace):
    workshop(workspace, "start", "3")

    result = workshop(workspace, "check")

    assert "FAIL  The consumer is asynchronous" in result.stdout
    assert "ChatConsumer is a WebsocketConsumer (synchronous)" in result.stdout


@pytest.mark.parametrize("part", [2, 3, 4])
def test_the_tutorials_own_code_passes_its_step(part, workspace):
    shutil.copytree(TUTORIAL / f"part{part}", workspace)
    (workspace / ".workshop.json").write_text(f'{{"step": {part}, "passed": false}}')

    result = workshop(workspace, "check")

    assert result.returncode == 0, result.stdout[-4000:]
    # Its differences from the workshop's own version are reported, never failed.
    assert "The workshop's version also" in result.stdout
    assert "FAIL" not in result.stdout


def a_finished_step(number: int, workspace):
    workshop(workspace, "start", str(number))
    lay_the_lesson_over(find_step(number), workspace)


def edit(path, old: str, new: str):
    text = path.read_text()
    assert old in text, f"{path} no longer has {old!r}"
    path.write_text(text.replace(old, new))


MISTAKES = {
    "daphne missing from INSTALLED_APPS": (
        2,
        "mysite/settings.py",
        '    "daphne",\n',
        "",
        'INSTALLED_APPS does not list "daphne"',
    ),
    "no ASGI_APPLICATION": (
        2,
        "mysite/settings.py",
        'ASGI_APPLICATION = "mysite.asgi.application"\n',
        "",
        "has no ASGI_APPLICATION",
    ),
    "no group_add": (
        2,
        "chat/consumers.py",
        "        async_to_sync(self.channel_layer.group_add)(\n"
        "            self.room_group_name, self.channel_name\n"
        "        )\n",
        "",
        "chat/consumers.py never joins the room's group",
    ),
    "a missing await": (
        3,
        "chat/consumers.py",
        "        await self.channel_layer.group_send(",
        "        self.channel_layer.group_send(",
        "An await is missing: InMemoryChannelLayer.group_send() was called but not"
        " awaited",
    ),
    "the ORM called from the async consumer": (
        6,
        "chat/consumers.py",
        "            frame = await database_sync_to_async(store.save_message)(\n"
        "                self.room_name, self.user, text\n"
        "            )\n",
        "            frame = store.save_message(self.room_name, self.user, text)\n",
        "calls the Django ORM directly",
    ),
}


@pytest.mark.parametrize(
    "step, path, code, mistake, message", MISTAKES.values(), ids=MISTAKES.keys()
)
def test_a_typical_mistake_is_named_in_plain_words(
    step, path, code, mistake, message, workspace
):
    a_finished_step(step, workspace)
    edit(workspace / path, code, mistake)

    result = workshop(workspace, "check")

    assert result.returncode == 1
    assert message in " ".join(result.stdout.split()), result.stdout
    assert "Traceback" not in result.stdout


def test_start_never_overwrites_your_work_without_being_asked(workspace):
    workshop(workspace, "start", "3")
    mine = workspace / "chat" / "consumers.py"
    mine.write_text("# my own work\n")

    refused = workshop(workspace, "start", "5")
    assert refused.returncode == 2
    assert "Nothing was changed" in refused.stderr
    assert "make start STEP=5 FORCE=1" in refused.stderr
    assert mine.read_text() == "# my own work\n"

    forced = workshop(workspace, "start", "5", "--force")
    assert forced.returncode == 0
    kept = next(workspace.parent.glob("workspace.before-*"))
    assert (kept / "chat" / "consumers.py").read_text() == "# my own work\n"
    assert "class ChatConsumer" in mine.read_text()  # the end of step 4


def test_after_a_passing_check_the_next_step_carries_on_from_your_code(workspace):
    a_finished_step(3, workspace)
    mine = workspace / "chat" / "consumers.py"
    mine.write_text(mine.read_text() + "# mine\n")
    assert workshop(workspace, "check").returncode == 0

    result = workshop(workspace, "start", "4")

    assert "carries on from your own code" in result.stdout
    assert mine.read_text().endswith("# mine\n")


def test_compare_shows_your_folder_against_the_reference(workspace):
    workshop(workspace, "start", "3")

    result = workshop(workspace, "compare")

    assert "step3_async_chat (the reference) -> workspace/ (yours)" in result.stdout
    assert "-class ChatConsumer(AsyncWebsocketConsumer):" in result.stdout
    assert "+class ChatConsumer(WebsocketConsumer):" in result.stdout


def test_check_without_a_workspace_says_how_to_start(workspace):
    result = workshop(workspace, "check")

    assert result.returncode == 2
    assert "There is no workspace/ yet" in result.stderr
    assert "python workshop.py start 2" in result.stderr


def test_a_quick_check_runs_only_the_lessons_checkpoints(workspace):
    a_finished_step(5, workspace)

    result = workshop(workspace, "check", "--quick")

    assert result.returncode == 0, result.stdout[-4000:]
    assert "Step 5: every checkpoint passes." in result.stdout
    assert "(not checked: a quick check)" in result.stdout
    assert "also runs the earlier lessons' tests" in " ".join(result.stdout.split())
