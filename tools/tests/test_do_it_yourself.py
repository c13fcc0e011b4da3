"""make start, make check and make compare, as a learner uses them (without make here:
`python workshop.py ...`, the same commands), each in a workspace of its own."""

import ast
import os
import re
import shutil
import subprocess
import sys

import pytest

from workshop.checkpoints import lesson_checks
from workshop.lessons import read_manifest
from workshop.steps import ROOT, all_steps, previous_step

TUTORIAL = ROOT / "tools" / "tests" / "tutorial"
# The steps a learner starts from the end of the step before.
STARTED_FROM_A_STEP = [
    s
    for s in all_steps()
    if previous_step(s) and not lesson_checks(s.name).starts_empty
]


def step_named(name: str):
    return next(step for step in all_steps() if step.name == name)


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


def checkpoint_block(output: str, title: str) -> str:
    """A checkpoint's line of the checklist and the lines under it."""
    found = re.search(
        rf"^  (?:FAIL|ok|--) +{re.escape(title)}.*?(?=^  (?:FAIL|ok|--) |^$)",
        output,
        re.MULTILINE | re.DOTALL,
    )
    assert found, f"no checkpoint {title!r} in:\n{output}"
    return " ".join(found[0].split())


@pytest.mark.parametrize("step", STARTED_FROM_A_STEP, ids=lambda s: s.name)
def test_a_step_checked_before_and_after_its_lesson(step, workspace):
    started = workshop(workspace, "start", str(step.number))
    assert started.returncode == 0, started.stderr
    assert f"{step.name}/README.md" in started.stdout

    # Before the lesson, only the lesson's own checkpoints (a quick check): a full
    # check runs the earlier lessons' tests too, as the check after the lesson does.
    before = workshop(workspace, "check", "--quick")

    assert before.returncode == 1, before.stdout
    titles = {checkpoint.title for checkpoint in lesson_checks(step.name).checkpoints}
    assert set(failing_titles(before.stdout)) & titles, before.stdout
    assert "Traceback" not in before.stdout + before.stderr
    assert "No test of it ran." not in before.stdout

    lay_the_lesson_over(step, workspace)
    # The lesson's own checkpoints are enough here: make test runs each step's tests
    # in full, and the tutorial's code is checked in full below.
    after = workshop(workspace, "check", "--quick")

    assert after.returncode == 0, after.stdout[-4000:]
    # A lesson whose tests are the learner's own is always checked in full.
    quick = not lesson_checks(step.name).own_tests
    passes = (
        "every checkpoint of the lesson passes" if quick else "every checkpoint passes"
    )
    assert f"Step {step.number}: {passes}." in after.stdout
    # While it runs: a line for each file of tests as it ends, before the checklist.
    progress = re.search(r"^  \S+\.py +\d+ passed.*\(\d+s\)$", after.stdout, re.M)
    assert progress, after.stdout
    assert progress.start() < after.stdout.index("  ok    ")


def test_step_3_before_its_lesson_names_the_synchronous_consumer(workspace):
    step = step_named("step3_async_chat")
    workshop(workspace, "start", str(step.number))

    result = workshop(workspace, "check")

    assert "FAIL  The consumer is asynchronous" in result.stdout
    assert "ChatConsumer is a WebsocketConsumer (synchronous)" in result.stdout


# --- the official tutorial's own code -----------------------------------------------


def settings_blocks(source: str) -> dict[str, tuple[int, int]]:
    """Each top-level assignment of a settings file: name -> (first, last line)."""
    return {
        node.targets[0].id: (node.lineno, node.end_lineno)
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }


def edit_settings_as_the_tutorial_says(before: str, after: str, mine: str) -> str:
    """Each setting the tutorial's part adds or changes, made in my settings file
    (the rest of my file as it is): the settings are edited, never replaced."""
    old, new = settings_blocks(before), settings_blocks(after)
    after_lines = after.splitlines(keepends=True)
    for name, (first, last) in new.items():
        block = "".join(after_lines[first - 1 : last])
        if name in old:
            old_first, old_last = old[name]
            if "".join(before.splitlines(keepends=True)[old_first - 1 : old_last]) == (
                block
            ):
                continue
        lines = mine.splitlines(keepends=True)
        if name in settings_blocks(mine):
            my_first, my_last = settings_blocks(mine)[name]
            lines[my_first - 1 : my_last] = [block]
        else:
            lines.append("\n" + block)
        mine = "".join(lines)
    return mine


def write_the_tutorials_part(part: int, workspace):
    """What the tutorial's part has a learner write, written into the workspace: its
    files whole, its settings as edits (see tools/tests/tutorial/README.md)."""
    new = TUTORIAL / f"part{part}"
    old = TUTORIAL / f"part{part - 1}"
    for path in sorted(p for p in new.rglob("*") if p.is_file()):
        name = path.relative_to(new).as_posix()
        before = old / name
        if before.exists() and before.read_bytes() == path.read_bytes():
            continue
        target = workspace / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name == "mysite/settings.py" and target.exists() and before.exists():
            target.write_text(
                edit_settings_as_the_tutorial_says(
                    before.read_text(), path.read_text(), target.read_text()
                )
            )
        else:
            shutil.copyfile(path, target)


def assert_the_tutorials_code_passes(result):
    assert result.returncode == 0, result.stdout[-4000:]
    assert "FAIL" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("part", [1, 2, 3, 4])
def test_the_tutorials_own_code_passes_its_step(part, workspace):
    # As a learner: `make start STEP=N`, then part N of the tutorial, as it says.
    started = workshop(workspace, "start", str(part))
    assert started.returncode == 0, started.stderr
    write_the_tutorials_part(part, workspace)

    result = workshop(workspace, "check")

    assert_the_tutorials_code_passes(result)
    if part > 1:
        # Its differences from the workshop's own version are reported, never failed.
        assert "The workshop's version also" in result.stdout


def test_the_tutorials_code_carries_on_from_part_to_part(workspace):
    # A learner who follows the tutorial from its first part to its fourth, each
    # step carrying on from their own code.
    for part in (1, 2, 3, 4):
        started = workshop(workspace, "start", str(part))
        assert started.returncode == 0, started.stderr
        assert part == 1 or "carries on from your own code" in started.stdout
        write_the_tutorials_part(part, workspace)

        result = workshop(workspace, "check")

        assert_the_tutorials_code_passes(result)
        if part > 1:
            assert "The workshop's version also" in result.stdout


# --- mistakes -------------------------------------------------------------------------


def a_finished_step(name: str, workspace):
    step = step_named(name)
    workshop(workspace, "start", str(step.number))
    lay_the_lesson_over(step, workspace)
    return step


def edit(path, old: str, new: str) -> int:
    """Replace old with new; returns the line the new text starts on."""
    text = path.read_text()
    assert old in text, f"{path} no longer has {old!r}"
    path.write_text(text.replace(old, new))
    return text[: text.index(old)].count("\n") + 1


MISTAKES = {
    "daphne missing from INSTALLED_APPS": (
        "step2_sync_chat",
        "mysite/settings.py",
        '    "daphne",\n',
        "",
        'INSTALLED_APPS does not list "daphne"',
    ),
    "no ASGI_APPLICATION": (
        "step2_sync_chat",
        "mysite/settings.py",
        'ASGI_APPLICATION = "mysite.asgi.application"\n',
        "",
        "has no ASGI_APPLICATION",
    ),
    "no group_add": (
        "step2_sync_chat",
        "chat/consumers.py",
        "        async_to_sync(self.channel_layer.group_add)(\n"
        "            self.room_group_name, self.channel_name\n"
        "        )\n",
        "",
        "chat/consumers.py never joins the room's group",
    ),
    "a missing await": (
        "step3_async_chat",
        "chat/consumers.py",
        "        await self.channel_layer.group_send(",
        "        self.channel_layer.group_send(",
        "chat/consumers.py, line {line}: An await is missing:"
        " InMemoryChannelLayer.group_send() was called but not awaited",
    ),
    "the ORM called from the async consumer": (
        "step6_history",
        "chat/consumers.py",
        "            frame = await database_sync_to_async(store.save_message)(\n"
        "                self.room_name, self.user, message.text\n"
        "            )\n",
        "            frame = store.save_message(self.room_name, self.user, message.text)\n",
        "chat/consumers.py, line {line}: The asynchronous consumer calls the Django"
        " ORM directly",
    ),
}


@pytest.mark.parametrize(
    "step, path, code, mistake, message", MISTAKES.values(), ids=MISTAKES.keys()
)
def test_a_typical_mistake_is_named_once_in_plain_words(
    step, path, code, mistake, message, workspace
):
    a_finished_step(step, workspace)
    line = edit(workspace / path, code, mistake)

    result = workshop(workspace, "check")

    assert result.returncode == 1
    said = " ".join(result.stdout.split())
    message = message.format(line=line)
    assert said.count(message) == 1, result.stdout
    assert "Traceback" not in result.stdout


def test_a_mistake_every_test_would_meet_stops_the_check_at_its_first_failure(
    workspace,
):
    a_finished_step("step6_history", workspace)
    edit(
        workspace / "chat" / "consumers.py",
        "await database_sync_to_async(store.save_message)(",
        "store.save_message(",
    )

    result = workshop(workspace, "check")

    assert "Stopped: every later test would meet the same mistake." in result.stdout
    # A mark per test that ended, in rows: only one of them failed.
    marks = re.findall(r"^  ([.Fs]+) +\d+ of \d+$", result.stdout, re.MULTILINE)
    assert "".join(marks).count("F") == 1, result.stdout
    said = " ".join(result.stdout.split())
    assert "Not checked: the same mistake as above (chat/consumers.py, line" in said


def test_an_untouched_workspace_names_the_error_that_stops_the_tests(workspace):
    step = step_named("step6_history")
    workshop(workspace, "start", str(step.number))

    result = workshop(workspace, "check")

    said = " ".join(result.stdout.split())
    assert "No test of it ran." not in said
    assert said.count("ModuleNotFoundError: No module named 'chat.models'") == 1, said
    assert "chat/test_consumers.py, line" in said
    assert "Not checked: the same error as above." in said


def test_a_failing_browser_test_is_explained_by_its_page(workspace, tmp_path):
    a_finished_step("step6_history", workspace)
    # The page shows new messages, and not the history it gets on joining.
    edit(
        workspace / "chat" / "templates" / "chat" / "room.html",
        "frame.messages.forEach(showMessage);",
        "// the history is not shown",
    )

    result = workshop(workspace, "check", "--quick", "--details")

    history = checkpoint_block(
        result.stdout,
        "A socket gets the room's latest messages on joining, each once",
    )
    assert history.startswith("FAIL"), history
    # The failing test's own words, and the file it needs: the page, not the consumer.
    assert "the history is gone after a reload" in history
    assert (
        'chat/templates/chat/room.html shows the messages of the "history"' in history
    )
    assert 'The consumer sends a "history" frame' not in history
    # The screenshots of the failing browser test outlive the check, where it says.
    kept = tmp_path / "build" / "check-artifacts"
    assert any(kept.rglob("*.png")), result.stdout[-3000:]
    assert str(kept) in result.stdout


# --- start, compare ----------------------------------------------------------------


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
    step = a_finished_step("step3_async_chat", workspace)
    mine = workspace / "chat" / "consumers.py"
    mine.write_text(mine.read_text() + "# mine\n")
    assert workshop(workspace, "check").returncode == 0

    result = workshop(workspace, "start", str(step.number + 1))

    assert "carries on from your own code" in result.stdout
    assert mine.read_text().endswith("# mine\n")


def test_compare_shows_the_files_you_write_and_all_of_them_when_asked(workspace):
    step = step_named("step5_users")
    workshop(workspace, "start", str(step.number))

    result = workshop(workspace, "compare")
    everything = workshop(workspace, "compare", "--all")

    listed = re.findall(r"^  (\S+)$", result.stdout, re.MULTILINE)
    assert "chat/consumers.py" in listed
    assert "-class ChatConsumer(AsyncJsonWebsocketConsumer):" in result.stdout
    assert not [name for name in listed if "test" in name or name.endswith(".md")]
    assert "make compare ALL=1" in result.stdout
    listed_all = re.findall(r"^  (\S+)$", everything.stdout, re.MULTILINE)
    assert {"README.md", "chat/consumers.py", "tests/test_pages.py"} <= set(listed_all)


def test_check_without_a_workspace_says_how_to_start(workspace):
    result = workshop(workspace, "check")

    assert result.returncode == 2
    assert "There is no workspace/ yet" in result.stderr
    assert "python workshop.py start 2" in result.stderr


def test_a_quick_check_runs_only_the_lessons_checkpoints(workspace):
    step = a_finished_step("step5_users", workspace)

    result = workshop(workspace, "check", "--quick")

    assert result.returncode == 0, result.stdout[-4000:]
    assert (
        f"Step {step.number}: every checkpoint of the lesson passes." in result.stdout
    )
    assert "(not checked: a quick check)" in result.stdout
    assert "also runs the earlier lessons' tests" in " ".join(result.stdout.split())

    # Passed, but quickly: the next step does not carry on yet, and says why.
    refused = workshop(workspace, "start", str(step.number + 1))
    assert refused.returncode == 2
    assert "its quick check (QUICK=1) has passed" in " ".join(refused.stderr.split())
    assert "has not passed yet" not in refused.stderr


def test_a_parameter_holding_two_colons_keeps_its_tests_name():
    from workshop.diy import test_name

    nodeid = "chat/test_consumers.py::test_refused[in-memory-http://[::1]"

    assert test_name(nodeid) == "test_refused[in-memory-http://[::1]"
    assert test_name("tests/test_pages.py::test_home") == "test_home"


def test_a_failing_checkpoint_names_each_failing_test_once_and_how_many_more():
    from types import SimpleNamespace

    from workshop.checkpoints import Checkpoint
    from workshop.diy import SHOWN_FAILURES, Report, Result, judge_tests

    layers = ("in-memory", "redis", "pubsub")
    results = {
        f"test_number_{n}[{layer}]": Result("failed", f"AssertionError: {n}")
        for n in range(SHOWN_FAILURES + 2)
        for layer in layers
    }
    evidence = SimpleNamespace(causes_of=lambda failed: [])
    report = Report()

    judge_tests(report, Checkpoint("Numbers", "See the README."), results, evidence)

    text = " ".join(" ".join(report.lines).split())
    assert "Failed: number 0 (on in-memory, redis, pubsub): AssertionError: 0" in text
    assert text.count("Failed: number 0 ") == 1
    assert f"Failed: number {SHOWN_FAILURES - 1} " in text
    assert f"number {SHOWN_FAILURES} " not in text
    assert "And 2 more tests failed" in text
