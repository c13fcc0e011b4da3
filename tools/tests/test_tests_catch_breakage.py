"""The steps' tests can fail: each is run against a step broken on purpose.

A test that passes whatever the consumer does proves nothing. Here a step is copied
to a scratch folder, one thing in the copy is broken (a mutant), and the tests that
should notice are run against the copy: every one of them must fail. None may pass,
and none may be skipped for want of a part when that part is required.
"""

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field

import pytest

from workshop.requirements import part_missing
from workshop.steps import step_named
from workshop.testrun import environment


@dataclass(frozen=True)
class Mutant:
    step: str  # the step's folder
    file: str
    code: str  # what the step has ("": the whole file)
    broken: str  # what the mutant has instead
    tests: tuple[str, ...]  # pytest arguments: the tests that must notice
    # Tests the pytest arguments select that check something the mutant does not
    # touch, so they may pass (each with its reason, in a comment).
    may_pass: frozenset[str] = field(default_factory=frozenset)
    # Text the failures must show, so that they fail for the right reason.
    failure_says: str = ""


EMPTY_CONSUMER = """\
from channels.generic.websocket import AsyncWebsocketConsumer


class ChatConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
"""

MUTANTS = {
    # The tutorial's own tests notice the chat reaching only its sender.
    "step4_testing: group_send replaced by a send to the sender only": Mutant(
        step="step4_testing",
        file="chat/consumers.py",
        code=(
            "        await self.channel_layer.group_send(\n"
            '            self.room_group_name, {"type": "chat.message", "message": message}\n'
            "        )\n"
        ),
        broken='        await self.send(text_data=json.dumps({"message": message}))\n',
        tests=(
            "chat/tests.py::ChatTests::test_when_chat_message_posted_then_seen_by_everyone_in_same_room",
            "chat/test_consumers.py::test_message_fans_out_to_every_socket_in_the_room",
            "-k",
            "not redis",
        ),
        failure_says="Message was not received by window 2 from window 1",
    ),
    "step4_testing: a consumer that only accepts": Mutant(
        step="step4_testing",
        file="chat/consumers.py",
        code="",
        broken=EMPTY_CONSUMER,
        tests=("tests/test_chat.py", "chat/test_consumers.py", "-k", "not redis"),
        # The tutorial's shell check of the channel layer's configuration: it sends
        # and receives on the layer itself, with no consumer involved.
        may_pass=frozenset({"test_channel_layer_round_trip[in-memory]"}),
    ),
    # Each test fixed so that it can fail, and the breakage it now catches.
    "step2_sync_chat: the refused room's name inserted as HTML": Mutant(
        step="step2_sync_chat",
        file="chat/templates/chat/room_name_refused.html",
        code="“{{ room_name }}”",
        broken="“{{ room_name|safe }}”",
        tests=("tests/test_pages.py::test_room_name_is_escaped_in_the_page",),
    ),
    "step2_sync_chat: a frame without a message relayed to the room": Mutant(
        step="step2_sync_chat",
        file="chat/consumers.py",
        code='        message = text_data_json["message"]\n',
        broken='        message = text_data_json.get("message", text_data)\n',
        tests=(
            "tests/test_chat.py::test_malformed_frame_reaches_nobody_else",
            "-k",
            "in-memory and no-message-key",
        ),
    ),
    "step2_sync_chat: every room shares one group": Mutant(
        step="step2_sync_chat",
        file="chat/consumers.py",
        code='        self.room_group_name = f"chat_{self.room_name}"\n',
        broken='        self.room_group_name = "chat_everyone"\n',
        tests=(
            "tests/test_chat.py::test_a_client_in_another_room_receives_nothing",
            "-k",
            "not redis",
        ),
    ),
    "step2_sync_chat: a room name with a slash gets Django's 404 page": Mutant(
        step="step2_sync_chat",
        file="chat/urls.py",
        code='    path("<path:room_name>/", views.room, name="room"),\n',
        broken='    path("<str:room_name>/", views.room, name="room"),\n',
        tests=(
            "tests/test_pages.py::test_room_name_with_a_slash_gets_the_page_that_says_why",
        ),
    ),
    "step4_testing: the sender gets its message twice": Mutant(
        step="step4_testing",
        file="chat/consumers.py",
        code=(
            "        await self.channel_layer.group_send(\n"
            '            self.room_group_name, {"type": "chat.message", "message": message}\n'
            "        )\n"
        ),
        broken=(
            "        await self.channel_layer.group_send(\n"
            '            self.room_group_name, {"type": "chat.message", "message": message}\n'
            "        )\n"
            '        await self.send(text_data=json.dumps({"message": message}))\n'
        ),
        tests=(
            "chat/test_consumers.py::test_message_is_echoed_to_its_sender_once",
            "-k",
            "not redis",
        ),
    ),
    "step4_testing: a greeting before anyone speaks": Mutant(
        step="step4_testing",
        file="chat/consumers.py",
        code="        await self.accept()\n",
        broken=(
            "        await self.accept()\n"
            '        await self.send(text_data=json.dumps({"message": "welcome"}))\n'
        ),
        tests=(
            "chat/test_consumers.py::test_nothing_arrives_until_someone_speaks",
            "chat/test_consumers.py::test_rooms_are_isolated",
            "-k",
            "not redis",
        ),
    ),
    "step5_users: message text inserted as HTML": Mutant(
        step="step5_users",
        file="chat/templates/chat/room.html",
        code="span.textContent = text;",
        broken="span.innerHTML = text;",
        tests=(
            "chat/tests.py::TwoUsersChatTests::test_markup_in_a_message_is_shown_as_text",
        ),
    ),
    "step7_reconnecting: no catch-up from the database": Mutant(
        step="step7_reconnecting",
        file="chat/consumers.py",
        code='        """Send, from the database, every message newer than this socket has."""\n',
        broken='        """Send, from the database, every message newer than this socket has."""\n'
        "        return\n",
        tests=(
            "chat/test_consumers.py::test_messages_the_layer_dropped_are_fetched_when_a_later_one_arrives",
            "chat/test_consumers.py::test_broadcasts_that_cross_are_shown_in_number_order_once",
            "-k",
            "not redis",
        ),
    ),
    "step10_hardening: a frame nested too deeply crashes the consumer": Mutant(
        step="step10_hardening",
        file="chat/protocol.py",
        code="    except RecursionError:\n",
        broken="    except ZeroDivisionError:\n",
        tests=(
            "chat/test_protocol_properties.py::test_any_text_frame_gets_an_error_or_is_a_message",
            "-k",
            "in-memory",
        ),
    ),
    "step10_hardening: each process counts its own rate limit": Mutant(
        step="step10_hardening",
        file="chat/limits.py",
        code="    if settings.REDIS_URL:\n",
        broken="    if False:\n",
        tests=(
            "tests/test_service.py::test_the_rate_limit_holds_across_workers",
            "chat/test_consumers.py::test_with_redis_the_rate_limit_is_kept_in_redis",
        ),
    ),
    "step11_sessions: logging out leaves the sockets open": Mutant(
        step="step11_sessions",
        file="chat/signals.py",
        code="    if request is None or not request.session.session_key:\n",
        broken="    if True:\n",
        tests=(
            "chat/test_consumers.py::test_logging_out_closes_that_sessions_sockets_at_once",
            "-k",
            "in-memory",
        ),
    ),
    "step15_presence_in_redis: the cap counted, then taken": Mutant(
        step="step15_presence_in_redis",
        file="chat/online.py",
        code="        await self.refresh([(room_name, user, channel_name)])\n",
        broken="        await asyncio.sleep(0)  # another socket's turn\n"
        "        await self.refresh([(room_name, user, channel_name)])\n",
        tests=(
            "chat/test_online.py::test_the_cap_cannot_be_passed_by_sockets_opening_at_once",
            "-k",
            "memory",
        ),
    ),
    "step15_presence_in_redis: a dead process's sockets never expire": Mutant(
        step="step15_presence_in_redis",
        file="chat/online.py",
        code="redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\nlocal seen",
        broken="local seen",
        tests=(
            "chat/test_online.py::test_a_socket_that_dies_without_a_close_frame_expires",
            "-k",
            "redis",
        ),
    ),
    "step16_messages_in_batches: a batch numbered in reverse": Mutant(
        step="step16_messages_in_batches",
        file="chat/store.py",
        code="Message(room=room, number=first + i,",
        broken="Message(room=room, number=room.last_number - i,",
        tests=(
            "chat/test_consumers.py::test_messages_sent_at_once_are_stored_in_one_batch_in_order",
            "-k",
            "in-memory",
        ),
    ),
    "step16_messages_in_batches: each key's count forgets the ones before it": Mutant(
        step="step16_messages_in_batches",
        file="chat/limits.py",
        code="ARGV[3] .. ':' .. i)",
        broken="ARGV[3])",
        tests=(
            "chat/test_consumers.py::test_the_rate_limit_in_a_batch_refuses_only_the_messages_over_it",
            "-k",
            "redis",
        ),
    ),
    "step17_reconnect_storms: every join at once": Mutant(
        step="step17_reconnect_storms",
        file="chat/consumers.py",
        code="        async with joins_in_turn():\n            await self.join()\n",
        broken="        await self.join()\n",
        tests=(
            "chat/test_consumers.py::test_a_crowd_joins_a_few_at_a_time_and_each_gets_its_history",
        ),
    ),
}


def broken_copy(mutant: Mutant, scratch) -> "os.PathLike":
    source = step_named(mutant.step).path
    copy = scratch / source.name
    shutil.copytree(
        source,
        copy,
        ignore=shutil.ignore_patterns(
            "__pycache__",
            ".pytest_cache",
            ".hypothesis",
            "*.sqlite3*",
            "test-artifacts",
        ),
    )
    path = copy / mutant.file
    if not mutant.code:
        path.write_text(mutant.broken)
        return copy
    text = path.read_text()
    assert text.count(mutant.code) == 1, (
        f"{source.name}/{mutant.file} no longer has, once, the code this mutant breaks:"
        f"\n{mutant.code}\nupdate the mutant in {__file__}"
    )
    path.write_text(text.replace(mutant.code, mutant.broken))
    return copy


def outcomes(junit_xml) -> dict[str, tuple[str, str]]:
    """Test name -> (passed | failed | skipped, message)."""
    found = {}
    for case in ElementTree.parse(junit_xml).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = (
                    "failed",
                    (child.get("message") or "") + (child.text or ""),
                )
            elif child.tag == "skipped":
                outcome, message = "skipped", child.get("message") or ""
        found[case.get("name")] = (outcome, message)
    return found


@pytest.mark.parametrize("mutant", MUTANTS.values(), ids=MUTANTS.keys())
def test_the_tests_fail_against_a_broken_step(mutant, tmp_path):
    copy = broken_copy(mutant, tmp_path)
    junit_xml = tmp_path / "results.xml"

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "workshop.pytest_plugin",
            "-q",
            f"--junitxml={junit_xml}",
            *mutant.tests,
        ],  # fmt: skip
        cwd=copy,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    results = outcomes(junit_xml) if junit_xml.exists() else {}

    assert results, f"no test ran:\n{run.stdout[-3000:]}{run.stderr[-2000:]}"
    skipped = {name: why for name, (o, why) in results.items() if o == "skipped"}
    if skipped:
        part_missing(
            next(iter(skipped.values())),
            "REQUIRE_BROWSER" if "Chrom" in str(skipped) else "REQUIRE_REDIS",
        )
    passed = sorted(
        name
        for name, (outcome, _) in results.items()
        if outcome == "passed" and name not in mutant.may_pass
    )
    assert not passed, f"these tests pass against the broken step: {passed}"
    if mutant.failure_says:
        assert mutant.failure_says in run.stdout, run.stdout[-3000:]
