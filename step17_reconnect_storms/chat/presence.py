"""Who is online in a room, told to the room as changes: who came, who left.

A page gets the whole list once, when it joins (see the consumer's connect); from
then on, small "presence_diff" frames. Telling everyone the whole list on every
change would cost every member a copy of N names for each of N joins: a million
names sent, and held in queues, for a room of a thousand.
"""

import asyncio
import json
import logging

from django.conf import settings

from . import online
from .groups import room_group

logger = logging.getLogger(__name__)

# Rooms of this process with an announcement already on its way.
PENDING = set()
BACKGROUND_TASKS = set()


def announce_presence_soon(channel_layer, room_name):
    """Tell the room who came and who left, at most once per PRESENCE_COALESCE_SECONDS:
    when 1000 people join at once (a server restarts), the joins and leaves within
    the interval share one broadcast, sent in the background."""
    if room_name in PENDING:
        return
    PENDING.add(room_name)
    task = asyncio.create_task(announce_later(channel_layer, room_name))
    BACKGROUND_TASKS.add(task)  # keep a reference until it is done
    task.add_done_callback(BACKGROUND_TASKS.discard)


async def announce_later(channel_layer, room_name):
    try:
        await asyncio.sleep(settings.PRESENCE_COALESCE_SECONDS)
    finally:
        PENDING.discard(room_name)
    try:
        await announce_presence(channel_layer, {room_name})
    except Exception as error:
        # Redis or the database is unreachable just now: the heartbeat announces
        # the change, or finds the pages that missed it (chat/heartbeat.py).
        logger.warning("Presence in %s not announced yet: %r", room_name, error)


async def announce_presence(channel_layer, room_names):
    """Send each of these rooms who came and who left since it was last told, if
    anyone did (also the heartbeat's, for sockets whose server process died): a
    small frame, the same for every member, so encoded once."""
    changes = await online.backend().changes(room_names)
    for change in changes:
        frame = {"type": "presence_diff", "room": change.room}
        frame.update(joined=change.joined, left=change.left)
        await channel_layer.group_send(
            room_group(change.room),
            {
                "type": "chat.presence_diff",
                # Numbered, so that a socket can tell it missed one.
                "version": change.version,
                "frame": json.dumps(frame),
            },
        )
