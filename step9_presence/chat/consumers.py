import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import protocol, store
from .groups import NOTIFICATIONS, room_group
from .heartbeat import heartbeat
from .protocol import CLOSE_LOGIN_REQUIRED, Refused
from .room_names import is_valid_room_name

logger = logging.getLogger(__name__)
# How long a broadcast may take before the heartbeat is left to deliver it.
BROADCAST_TIMEOUT_SECONDS = 2
# Rooms of this process with a presence broadcast already on its way.
PENDING_PRESENCE = set()
BACKGROUND_TASKS = set()
# One lock per room and event loop (an asyncio lock belongs to one event loop).
ROOM_LOCKS = weakref.WeakKeyDictionary()


def room_lock(room_name):
    """Held while one of the room's messages is numbered and broadcast, so that this
    process broadcasts a room's messages one at a time, in number order. Kept only
    while someone holds it or waits for it: every room name ever used would
    otherwise stay in memory."""
    locks = ROOM_LOCKS.setdefault(
        asyncio.get_running_loop(), weakref.WeakValueDictionary()
    )
    lock = locks.get(room_name)
    if lock is None:
        lock = locks[room_name] = asyncio.Lock()
    return lock


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One logged-in user's socket in one room.

    Speaks the JSON protocol of the README: the browser sends {"type": "message",
    "text": ..., "client_id": ...}; the server sends "history", "message", "ack",
    "presence", "notification" and "error" frames. Every message is stored before
    it is broadcast, and numbered within its room, so that a socket that missed
    some gets them from the database.
    """

    open = False  # accepted, and not closed by this consumer
    joined = False  # in the room's group and the heartbeat, with a presence row
    delivered = 0  # the number of the newest message this socket has been sent

    async def __call__(self, scope, receive, send):
        async def send_while_open(message):
            # uvicorn answers the page's close frame at once: a send before this
            # consumer reads the websocket.disconnect raises RuntimeError. The page
            # is gone, so end quietly (before accept, or after our close: a bug).
            try:
                await send(message)
            except RuntimeError:
                if self.open:
                    raise StopConsumer() from None
                raise
            if message["type"] in ("websocket.accept", "websocket.close"):
                self.open = message["type"] == "websocket.accept"

        try:
            await super().__call__(scope, receive, send_while_open)
        finally:
            # A send that raises ClientDisconnected ends the consumer without
            # disconnect() (django/channels issue 1466): leave however it ends.
            await self.leave()

    # --- WebSocket handlers: the browser talks to us -------------------------------

    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = room_group(self.room_name)
        # AuthMiddlewareStack (mysite/asgi.py) found the user from the session
        # cookie, as Django's AuthenticationMiddleware does for a view.
        self.user = self.scope["user"]
        if not is_valid_room_name(self.room_name):
            await self.close()
            return
        if self.user.is_authenticated:
            # In the room's group before the page hears "open": nothing said from
            # then on can miss this socket. And joined before the history is read: a
            # message stored in between comes twice (in the history, then as an
            # event, which is skipped), but none can fall between the two.
            await self.join_groups()
            self.joined = True
        # Accepted even without a user, so that the close code reaches the page (a
        # refused handshake gives the browser no code at all).
        await self.accept()
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_LOGIN_REQUIRED)
            return
        await self.send_history(protocol.requested_after(self.scope["query_string"]))
        await database_sync_to_async(store.enter)(
            self.room_name, self.user, self.channel_name
        )
        await self.broadcast_presence()
        # From now on the process's heartbeat joins this socket's groups again now
        # and then, keeps its presence fresh, and catches up what the layer dropped
        # (chat/heartbeat.py).
        heartbeat().add(self)

    async def disconnect(self, close_code):
        await self.leave()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """A frame from the browser. Anything but a valid message gets an "error"
        frame; the socket stays open and nothing is broadcast."""
        if not self.joined:
            return
        try:
            message = protocol.parse(text_data, bytes_data)
        except Refused as refusal:
            return await self.send_json(refusal.frame())
        async with room_lock(self.room_name):
            # Stored first: once it is in the database, nobody can lose it for good.
            # The ORM blocks, so it runs in a worker thread, off the event loop.
            frame, new = await database_sync_to_async(store.save_message)(
                self.room_name, self.user, message.text, message.client_id
            )
            if message.client_id is not None:
                # Stored: the page stops keeping it to send again.
                await self.send_json(
                    {"type": "ack", "client_id": message.client_id, "id": frame["id"]}
                )
            if not new:
                return  # sent again after a reconnection; broadcast the first time
            try:
                await asyncio.wait_for(
                    self.channel_layer.group_send(
                        self.room_group_name,
                        {"type": "chat.message", "number": frame["id"], "frame": frame},
                    ),
                    BROADCAST_TIMEOUT_SECONDS,
                )
            except Exception as error:
                # Redis is unreachable just now. The message is stored and
                # acknowledged, so it is not lost: the heartbeat finds the sockets
                # behind it and they fetch it from the database. The sender's socket
                # stays open, and the room's lock is not held for the layer's retries.
                logger.warning(
                    "Message %s in %s stored, not broadcast yet: %r",
                    frame["id"],
                    self.room_name,
                    error,
                )

    # --- Channel layer handlers: the room's group talks to us ----------------------

    async def chat_message(self, event):
        number = event["number"]
        if number <= self.delivered:
            return  # already sent, in the history or by a catch-up
        if number > self.delivered + 1:
            # Messages before this one have not reached this socket: the channel
            # layer dropped them (this socket's channel was full), or another
            # process's broadcast is still on its way. Each was stored before it was
            # broadcast, so the database has them all, in order: fetch them now.
            await self.catch_up()
            return
        await self.send_json(event["frame"])
        self.delivered = number

    async def chat_catch_up(self, event):
        """From the heartbeat, which saw the room's newest message. The events queued
        before this one have been handled by now: if they brought it, nothing to do."""
        if self.delivered < event["newest"]:
            await self.catch_up()

    async def chat_presence(self, event):
        await self.send_json(
            {"type": "presence", "room": self.room_name, "users": event["users"]}
        )

    async def chat_notification(self, event):
        await self.send_json(
            {
                "type": "notification",
                "room": event["room"],
                "text": event["text"],
                "created": event["created"],
            }
        )

    # --- Helpers -------------------------------------------------------------------

    async def join_groups(self):
        """This socket's room, and everyone (for notifications). The heartbeat calls
        it again: joining a group twice is harmless, and repairs a lost membership."""
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.channel_layer.group_add(NOTIFICATIONS, self.channel_name)

    async def leave_groups(self):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)
        await self.channel_layer.group_discard(NOTIFICATIONS, self.channel_name)

    async def leave(self):
        """Leave the room, once, whether the socket closed or the consumer failed."""
        if not self.joined:
            return
        self.joined = False
        heartbeat().discard(self)
        await self.leave_groups()
        await database_sync_to_async(store.leave)(self.channel_name)
        await self.broadcast_presence()

    async def send_history(self, after):
        """The room's latest messages, or with ?after=N the messages after N. The
        frame says which number it follows, so that a page can tell."""
        start, frames = await database_sync_to_async(store.history)(
            self.room_name, after, settings.CHAT_HISTORY_LENGTH
        )
        await self.send_json(
            {
                "type": "history",
                "room": self.room_name,
                "after": start,
                "messages": frames,
            }
        )
        self.delivered = frames[-1]["id"] if frames else start

    async def catch_up(self):
        """Send, from the database, every message newer than this socket has."""
        frames = await database_sync_to_async(store.messages_after)(
            self.room_name, self.delivered
        )
        for frame in frames:
            await self.send_json(frame)
            self.delivered = frame["id"]

    async def broadcast_presence(self):
        """Tell the room who is online, at most once per PRESENCE_COALESCE_SECONDS.

        When 1000 people join at once (a meeting starts, a server restarts), one
        broadcast per join would send a million frames; instead, joins and leaves
        within the interval share one broadcast of the list as it then is. It runs
        in the background, so that joining and leaving do not wait for it.
        """
        room = self.room_group_name
        if room in PENDING_PRESENCE:
            return
        PENDING_PRESENCE.add(room)
        task = asyncio.create_task(self.broadcast_presence_soon(room))
        BACKGROUND_TASKS.add(task)  # keep a reference until it is done
        task.add_done_callback(BACKGROUND_TASKS.discard)

    async def broadcast_presence_soon(self, room):
        try:
            await asyncio.sleep(settings.PRESENCE_COALESCE_SECONDS)
        finally:
            PENDING_PRESENCE.discard(room)
        users = await database_sync_to_async(store.present_users)(self.room_name)
        await self.channel_layer.group_send(
            room, {"type": "chat.presence", "users": users}
        )
