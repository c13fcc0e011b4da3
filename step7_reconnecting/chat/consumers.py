import asyncio
import weakref

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import protocol, store
from .protocol import CLOSE_LOGIN_REQUIRED, Refused
from .room_names import is_valid_room_name

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
    "text": ..., "client_id": ...}; the server sends "history", "message", "ack"
    and "error" frames. Every message is stored before it is broadcast, and
    numbered within its room, so that a socket that missed some gets them from the
    database.
    """

    joined = False  # in the room's group
    delivered = 0  # the number of the newest message this socket has been sent

    # --- WebSocket handlers: the browser talks to us -------------------------------

    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
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
            await self.channel_layer.group_add(self.room_group_name, self.channel_name)
            self.joined = True
        # Accepted even without a user, so that the close code reaches the page (a
        # refused handshake gives the browser no code at all).
        await self.accept()
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_LOGIN_REQUIRED)
            return
        await self.send_history(protocol.requested_after(self.scope["query_string"]))

    async def disconnect(self, close_code):
        if self.joined:
            await self.channel_layer.group_discard(
                self.room_group_name, self.channel_name
            )

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
            await self.channel_layer.group_send(
                self.room_group_name,
                {"type": "chat.message", "number": frame["id"], "frame": frame},
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

    # --- Helpers -------------------------------------------------------------------

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
