"""The notes say what is true: the deployment note's commands are ones a test runs."""

import re

from workshop.lessons import read_manifest
from workshop.steps import ROOT, step_named

NOTE = ROOT / "notes" / "deployment.md"
# The step the note is about: the first that runs as deployed (lessons.ini), whose
# files it quotes; later steps deploy the same way.
DEPLOYED = step_named(
    [
        name
        for name, lesson in read_manifest().items()
        if lesson.settings.get("stack") == "yes"
    ][0]
)
# Each command the note gives, and the test that runs it (None: not run, and the note
# says why).
RUN_BY = {
    f"make step{DEPLOYED.number}-stack": (
        "tools/tests/test_commands.py",
        "test_the_stack_starts_serves_through_nginx_and_stops_on_ctrl_c",
    ),
    "python manage.py check --deploy --fail-level WARNING": (
        f"{DEPLOYED.name}/tests/test_settings.py",
        "test_check_deploy_is_clean_under_production_settings",
    ),
    "docker compose -f deploy/docker-compose.yml up --build": None,
}


def command_blocks(text: str) -> list[str]:
    """The lines of the fenced blocks that are commands, not quoted files."""
    lines = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        first = block.splitlines()[0] if block.strip() else ""
        if first.startswith(("# step", "<!-- step")) or block.startswith("flowchart"):
            continue  # a quoted file (make check-steps compares it) or a diagram
        lines += [line.strip() for line in block.splitlines() if line.strip()]
    return lines


def test_every_command_in_the_deployment_note_is_one_a_test_runs():
    for command in command_blocks(NOTE.read_text()):
        assert command in RUN_BY, (
            f"notes/deployment.md gives {command!r}: which test runs it?"
        )
        if RUN_BY[command] is None:
            continue
        path, test = RUN_BY[command]
        source = (ROOT / path).read_text()
        assert f"def {test}(" in source, f"{path} has no {test}"


def test_what_no_test_runs_is_said_to_be_unrun():
    text = " ".join(NOTE.read_text().split())

    assert "the compose file itself is not run by any test" in text
