"""channels_redis' pub/sub layer, with a bound on what waits for each socket.

Its queue for each consumer has no bound (`capacity` is the core layer's): a page
that stops reading in a busy room would keep every message in the server's memory.
This one drops what does not fit; the heartbeat catches the socket up from the
database once it reads again (chat/heartbeat.py).
"""

import asyncio
import logging

from channels_redis.pubsub import RedisPubSubChannelLayer

logger = logging.getLogger(__name__)


class DroppingQueue:
    """What the layer asks of an asyncio.Queue, bounded; and lighter: asyncio.Queue
    keeps three deques and an Event, 3 KiB for every socket. This keeps one list: a
    socket's queue is nearly always empty, and an empty list takes 56 bytes."""

    dropping = False  # warned once while it stays full, not once per message
    waiter = None  # what the channel's one reader, its consumer, waits on

    def __init__(self, maxsize):
        self.items, self.maxsize = [], maxsize

    async def get(self):
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.pop(0)

    def put_nowait(self, item):
        if len(self.items) < self.maxsize:
            self.dropping = False
            self.items.append(item)
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)
            return
        if not self.dropping:
            self.dropping = True
            logger.warning("A socket is %d messages behind: dropping", len(self.items))


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):
    async def new_channel(self, prefix="specific."):
        layer = self._get_layer()  # this event loop's
        channel = await layer.new_channel(prefix)
        layer.channels[channel] = DroppingQueue(self._kwargs.get("capacity", 100))
        return channel
