"""Presence as chat/online.py keeps it, in Redis and in one process's memory: the
same tests for both. The consumer tests (test_consumers.py) see it through the
frames a page receives."""

import asyncio
import uuid
from types import SimpleNamespace

import pytest

from chat import online
from testsupport.layers import TEST_PREFIX

ALICE = SimpleNamespace(pk=1, get_username=lambda: "alice")
BOB = SimpleNamespace(pk=2, get_username=lambda: "bob")


@pytest.fixture(params=["memory", "redis"])
def presence(request, settings):
    """Presence in this process's memory, or in a real Redis, with keys of the test's
    own."""
    settings.PRESENCE_TIMEOUT_SECONDS = 30
    if request.param == "redis":
        settings.REDIS_URL = request.getfixturevalue("redis_url")
        settings.CHAT_REDIS_PREFIX = f"{TEST_PREFIX}:{uuid.uuid4().hex}:"
    else:
        settings.REDIS_URL = ""
    return request.param


async def changes(room="lobby"):
    return [
        (change.joined, change.left)
        for change in await online.backend().changes({room})
    ]


async def test_a_join_and_a_leave_are_each_one_change(presence):
    await online.backend().enter("lobby", ALICE, "a1")
    version, users = await online.backend().told("lobby")  # what she is sent first
    assert users == []
    # Her page applies the next change to it: numbered one more, not a gap.
    assert await changes() == [(["alice"], [])]
    assert await online.backend().told("lobby") == (version + 1, ["alice"])
    version += 1

    await online.backend().enter("lobby", BOB, "b1")
    await online.backend().leave("lobby", ALICE, "a1")
    assert await changes() == [(["bob"], ["alice"])]
    assert await online.backend().told("lobby") == (version + 1, ["bob"])


async def test_nothing_new_is_no_change(presence):
    await online.backend().enter("lobby", ALICE, "a1")
    await changes()

    assert await changes() == []


async def test_two_sockets_of_one_user_are_one_name(presence):
    await online.backend().enter("lobby", ALICE, "a1")
    await online.backend().enter("lobby", ALICE, "a2")
    assert await changes() == [(["alice"], [])]

    await online.backend().leave("lobby", ALICE, "a1")
    assert await changes() == []  # she still has a socket here
    await online.backend().leave("lobby", ALICE, "a2")
    assert await changes() == [([], ["alice"])]


async def test_a_socket_that_dies_without_a_close_frame_expires(presence, settings):
    await online.backend().enter("lobby", BOB, "b1")
    await online.backend().enter("lobby", ALICE, "a1")
    assert await changes() == [(["alice", "bob"], [])]
    settings.PRESENCE_TIMEOUT_SECONDS = 0.001
    await online.backend().refresh([("lobby", ALICE, "a1")])  # its process's last
    await asyncio.sleep(0.05)

    assert await changes() == [([], ["alice"])]


async def test_the_heartbeat_keeps_a_socket_online(presence, settings):
    settings.PRESENCE_TIMEOUT_SECONDS = 0.001
    await online.backend().enter("lobby", ALICE, "a1")
    await asyncio.sleep(0.05)
    settings.PRESENCE_TIMEOUT_SECONDS = 30

    await online.backend().refresh([("lobby", ALICE, "a1")])

    assert await changes() == [(["alice"], [])]


async def test_the_cap_cannot_be_passed_by_sockets_opening_at_once(presence, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 5

    entered = await asyncio.gather(
        *(online.backend().enter(f"room{n % 3}", ALICE, f"a{n}") for n in range(20))
    )

    assert entered.count(True) == 5
    assert not await online.backend().enter("lobby", ALICE, "one-more")
    assert await online.backend().enter("lobby", BOB, "b1")  # another user's own cap
    first = entered.index(True)
    await online.backend().leave(f"room{first % 3}", ALICE, f"a{first}")
    assert await online.backend().enter("lobby", ALICE, "now-there-is-room")


async def test_an_expired_socket_leaves_room_under_the_cap(presence, settings):
    settings.CHAT_MAX_SOCKETS_PER_USER = 1
    settings.PRESENCE_TIMEOUT_SECONDS = 0.001
    await online.backend().enter("lobby", ALICE, "a1")  # its process died
    await asyncio.sleep(0.05)

    assert await online.backend().enter("lobby", ALICE, "a2")


async def test_announcements_at_once_tell_each_change_once(presence):
    await online.backend().enter("lobby", ALICE, "a1")

    told = await asyncio.gather(*(changes() for _ in range(10)))

    assert sorted(told, key=len)[-1] == [(["alice"], [])]
    assert sum(len(each) for each in told) == 1


@pytest.mark.parametrize("presence", ["redis"], indirect=True)  # memory cannot lose
async def test_versions_go_up_even_after_redis_forgot_them(presence, settings):
    await online.backend().enter("lobby", ALICE, "a1")
    await changes()
    version, _ = await online.backend().told("lobby")
    redis = online.backend().redis
    await redis.delete(*await redis.keys(f"{settings.CHAT_REDIS_PREFIX}*"))
    await asyncio.sleep(0.01)  # the clock moves on: a later version's start

    await online.backend().refresh([("lobby", ALICE, "a1")])  # the heartbeat
    assert await changes() == [(["alice"], [])]

    assert (await online.backend().told("lobby"))[0] > version
