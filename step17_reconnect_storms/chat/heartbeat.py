"""One heartbeat per server process, for all of its sockets.

Every open socket needs four things now and then, even when nobody speaks:

- to join its groups again: group memberships live in the channel layer, so a Redis
  restart forgets them (and a membership older than the layer's group_expiry lapses);
- to say it is still here (chat/online.py), so that presence can tell a live socket
  from one whose server process died without cleaning up (and then tell its room);
- to notice a message the channel layer dropped after the last one that arrived
  (nothing later reveals that gap), and fetch it; the same for a presence change.
- to end when its login has ended (expired, password changed, user deactivated,
  logged out while Redis could not tell it), as the page's next request would.

Done by each socket for itself, that would be two database calls per socket per beat:
with 1000 sockets, hundreds a second, queued in the one database thread in front of
the chat's own messages. Done once per process, it is one database call per beat
however many sockets there are, and the groups are joined a batch at a time.
"""

import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from django.conf import settings

from . import online, store
from .presence import announce_presence

logger = logging.getLogger(__name__)

# Channel layer commands in flight at once while joining the groups again.
REJOIN_BATCH = 50
# One heartbeat per event loop: a server process has one loop; each test its own.
HEARTBEATS = weakref.WeakKeyDictionary()


def heartbeat():
    """This process's heartbeat."""
    loop = asyncio.get_running_loop()
    if loop not in HEARTBEATS:
        HEARTBEATS[loop] = Heartbeat()
    return HEARTBEATS[loop]


class Heartbeat:
    """Beats while this process has sockets; a socket joins with add()."""

    def __init__(self):
        self.consumers = set()
        self.task = None

    def add(self, consumer):
        self.consumers.add(consumer)
        if self.task is None:
            self.task = asyncio.create_task(self.run())

    def discard(self, consumer):
        self.consumers.discard(consumer)
        if not self.consumers and self.task is not None:
            self.task.cancel()
            self.task = None

    async def run(self):
        while True:
            # Read on every beat, so that a changed setting takes effect (tests).
            await asyncio.sleep(settings.CHAT_HEARTBEAT_SECONDS)
            # Each duty on its own: while Redis is down, groups cannot be joined
            # again, but presence must still be refreshed, or everyone would seem
            # to have left.
            for duty in (
                self.join_groups_again,
                self.refresh_presence_and_catch_up,
                self.announce_presence,
                self.close_ended_sessions,
            ):
                try:
                    await duty()
                except Exception:
                    # Redis or the database is unreachable just now. Every socket
                    # of this process depends on this task, so it never stops: the
                    # next beat tries again.
                    logger.exception(
                        "Heartbeat: %s failed; trying again in %s s",
                        duty.__name__,
                        settings.CHAT_HEARTBEAT_SECONDS,
                    )

    async def join_groups_again(self):
        """A socket that cannot join its groups does not stop the others'."""
        consumers, failed = list(self.consumers), []
        for start in range(0, len(consumers), REJOIN_BATCH):
            batch = consumers[start : start + REJOIN_BATCH]
            results = await asyncio.gather(
                *(consumer.join_groups() for consumer in batch), return_exceptions=True
            )
            for consumer, result in zip(batch, results, strict=True):
                if consumer not in self.consumers:
                    # It left while it was being joined again: make sure it is out.
                    await consumer.leave_groups()
                elif isinstance(result, Exception):
                    failed.append(result)
        if failed:
            logger.warning(
                "Heartbeat: %d of %d sockets could not join their groups again (%r);"
                " trying again in %s s",
                len(failed),
                len(consumers),
                failed[0],
                settings.CHAT_HEARTBEAT_SECONDS,
            )

    async def refresh_presence_and_catch_up(self):
        consumers = list(self.consumers)
        presence = online.backend()
        await presence.refresh(
            [(each.room_name, each.user, each.channel_name) for each in consumers]
        )
        for gone in [each for each in consumers if each not in self.consumers]:
            # It left while it was being refreshed: make sure it is not online.
            await presence.leave(gone.room_name, gone.user, gone.channel_name)
        rooms = {consumer.room_name for consumer in consumers}
        newest = await database_sync_to_async(store.newest_numbers)(rooms)
        versions = {room: (await presence.told(room))[0] for room in rooms}
        for consumer in consumers:
            room_newest = newest.get(consumer.room_name, 0)
            version = versions[consumer.room_name]
            if room_newest > consumer.delivered or version > consumer.presence_version:
                try:
                    # Through the socket's own channel, so that the catch-up is
                    # handled in turn with its messages, never at the same time.
                    # Usually those were only queued, and it fetches nothing.
                    await consumer.channel_layer.send(
                        consumer.channel_name,
                        {
                            "type": "chat.catch_up",
                            "newest": room_newest,
                            "presence_version": version,
                        },
                    )
                except ChannelFull:
                    pass  # events are queued for it; the next beat looks again

    async def announce_presence(self):
        """Tell this process's rooms of any change nobody has told them of: the
        sockets of a server process that died, no longer refreshed, expire."""
        consumers = list(self.consumers)
        if consumers:
            await announce_presence(
                consumers[0].channel_layer,
                {consumer.room_name for consumer in consumers},
            )

    async def close_ended_sessions(self):
        """Sockets whose login has ended (expired, logged out while Redis was down,
        password changed, ...) are closed with 4401, as the page's next request
        would be sent to the login page."""
        consumers = list(self.consumers)
        ended = await database_sync_to_async(store.ended_sessions)(
            {(consumer.session_key, consumer.user.pk) for consumer in consumers}
        )
        for consumer in consumers:
            if (consumer.session_key, consumer.user.pk) in ended:
                try:
                    # Handled in turn, like the catch-up.
                    await consumer.channel_layer.send(
                        consumer.channel_name, {"type": "chat.logout"}
                    )
                except ChannelFull:
                    pass
