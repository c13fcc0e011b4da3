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


class DroppingQueue(asyncio.Queue):
    dropping = False  # warned once while it stays full, not once per message

    def put_nowait(self, item):
        if not self.full():
            self.dropping = False
            return super().put_nowait(item)
        if not self.dropping:
            self.dropping = True
            logger.warning("A socket is %d messages behind: dropping", self.qsize())


class BoundedPubSubChannelLayer(RedisPubSubChannelLayer):
    async def new_channel(self, prefix="specific."):
        layer = self._get_layer()  # this event loop's
        channel = await layer.new_channel(prefix)
        layer.channels[channel] = DroppingQueue(self._kwargs.get("capacity", 100))
        return channel
