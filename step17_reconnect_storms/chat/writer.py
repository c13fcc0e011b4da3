"""A room's messages, stored and broadcast in batches.

Every message used to pay alone for its rate limit (a round trip to Redis), its trip
to the database thread, and its transaction: in a room of 10 that is most of what a
message costs. Here the messages of a room that arrive while its last ones are being
stored wait, and go together: one rate-limit script for all their senders, one trip,
one transaction and one broadcast for all of them. A quiet room's message goes
alone, at once; a busy room's wait for the batches queued before them, as they
waited for the room's lock before. (Databases call this group commit; see
notes/performance.md.)
"""

import asyncio
import json
import logging
import weakref

from channels.db import database_sync_to_async

from . import limits, store
from .groups import room_group

logger = logging.getLogger(__name__)
# How long a broadcast may take before the heartbeat is left to deliver it.
BROADCAST_TIMEOUT_SECONDS = 2
# At most this many messages in one transaction.
MAX_BATCH = 100
# A broadcast event holds frames of at most this many bytes in all (or one bigger
# frame alone): a page that stops reading keeps up to CHANNEL_CAPACITY events, so
# bigger events would let it hold far more memory.
MAX_EVENT_BYTES = 16384
# The messages waiting in each room, per event loop (a future belongs to its loop):
# {room name: [(user, message, future), ...]}. A room is here only while its writer
# runs: every room name ever used would otherwise stay in memory.
WAITING = weakref.WeakKeyDictionary()
BACKGROUND_TASKS = set()


async def send_message(channel_layer, room_name, user, message):
    """Store the message (protocol.ChatMessage) and broadcast it to the room, with
    the room's other messages that are waiting. Returns what storing it returned, its
    frame and whether it is new; or None if the sender's rate limit refused it."""
    loop = asyncio.get_running_loop()
    rooms = WAITING.setdefault(loop, {})
    future = loop.create_future()
    if room_name in rooms:
        rooms[room_name].append((user, message, future))  # in the writer's next batch
    else:
        waiting = rooms[room_name] = [(user, message, future)]
        task = asyncio.create_task(write(channel_layer, room_name, rooms, waiting))
        BACKGROUND_TASKS.add(task)  # keep a reference until it is done
        task.add_done_callback(BACKGROUND_TASKS.discard)
        # Also if the task is cancelled before it starts (the server stopping).
        task.add_done_callback(lambda _: stopped(rooms, room_name, waiting, []))
    return await future


async def write(channel_layer, room_name, rooms, waiting):
    """The room's writer, one per room and process: it takes the waiting messages a
    batch at a time, so that this process numbers and broadcasts a room's messages
    one batch after the other, in number order. Gone once nothing waits."""
    batch = []
    try:
        while waiting:
            batch = waiting[:MAX_BATCH]
            del waiting[:MAX_BATCH]
            try:
                await store_and_broadcast(channel_layer, room_name, batch)
            except Exception as error:
                # The database is unreachable, say: the senders' sockets hear of it,
                # as each did in step 15 when storing its own message failed.
                fail(batch, error)
    finally:
        stopped(rooms, room_name, waiting, batch)


def stopped(rooms, room_name, waiting, batch):
    """The writer ended. Normally nothing waits; if it was cancelled, the senders
    still waiting are told, rather than left waiting for good."""
    if rooms.get(room_name) is waiting:
        del rooms[room_name]
    fail(batch + waiting, RuntimeError(f"the writer of {room_name} stopped"))


def fail(batch, error):
    for _, _, future in batch:
        if not future.done():  # else answered, or its socket closed meanwhile
            future.set_exception(error)


async def store_and_broadcast(channel_layer, room_name, batch):
    allowed = await limits.allow_messages([user for user, _, _ in batch])
    for (_, _, future), ok in zip(batch, allowed, strict=True):
        if not ok and not future.done():
            future.set_result(None)
    batch = [item for item, ok in zip(batch, allowed, strict=True) if ok]
    if not batch:
        return
    # Stored first: once it is in the database, nobody can lose it for good. The ORM
    # blocks, so it runs in a worker thread, off the event loop.
    results = await database_sync_to_async(store.save_messages)(
        room_name,
        [(user, message.text, message.client_id) for user, message, _ in batch],
    )
    for item, result in zip(batch, results, strict=True):
        if isinstance(result, Exception):  # this message alone (see save_messages)
            fail([item], result)
        elif not item[2].done():  # else its socket closed meanwhile
            item[2].set_result(result)  # its socket sends the "ack"
    # One sent again after a reconnection is broadcast the first time only.
    frames = [
        result[0] for result in results if isinstance(result, tuple) and result[1]
    ]
    for event in events(frames):
        await broadcast(channel_layer, room_name, event)


def events(frames):
    """The frames, encoded once here (not once for each member of the room), in
    events of at most MAX_EVENT_BYTES: [number, frame] each."""
    event, size = [], 0
    for frame in frames:
        text = json.dumps(frame)
        if event and size + len(text) > MAX_EVENT_BYTES:
            yield event
            event, size = [], 0
        event.append([frame["id"], text])
        size += len(text)
    if event:
        yield event


async def broadcast(channel_layer, room_name, messages):
    try:
        await asyncio.wait_for(
            channel_layer.group_send(
                room_group(room_name),
                # One event for the batch, so that each member's consumer wakes once.
                {"type": "chat.messages", "messages": messages},
            ),
            BROADCAST_TIMEOUT_SECONDS,
        )
    except Exception as error:
        # Redis is unreachable just now. The messages are stored and acknowledged, so
        # they are not lost: the heartbeat finds the sockets behind them and they
        # fetch them from the database. The room's writer is not held up by the
        # layer's retries.
        logger.warning(
            "Message %s in %s stored, not broadcast yet: %r",
            ", ".join(str(number) for number, _ in messages),
            room_name,
            error,
        )
