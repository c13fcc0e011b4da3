import asyncio
import logging
import weakref

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import limits, online, protocol, store, writer
from .groups import NOTIFICATIONS, room_group, session_group
from .heartbeat import heartbeat
from .presence import announce_presence_soon
from .protocol import CLOSE_LOGIN_REQUIRED, CLOSE_POLICY_VIOLATION, Refused
from .room_names import is_valid_room_name

logger = logging.getLogger(__name__)

# Each event loop's joins in progress (one loop per server process; each test its own).
JOINS = weakref.WeakKeyDictionary()


def joins_in_turn() -> asyncio.Semaphore:
    """This process's joins go CHAT_JOINS_AT_ONCE at a time, in the order they came."""
    loop = asyncio.get_running_loop()
    if loop not in JOINS:
        JOINS[loop] = asyncio.Semaphore(settings.CHAT_JOINS_AT_ONCE)
    return JOINS[loop]


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One logged-in user's socket in one room.

    Speaks the JSON protocol of the README: the browser sends {"type": "message",
    "text": ..., "client_id": ...}; the server sends "history", "message", "ack",
    "presence", "presence_diff", "notification" and "error" frames. Every message is stored before
    it is broadcast, and numbered within its room, so that a socket that missed
    some gets them from the database.
    """

    open = False  # accepted, and not closed by this consumer
    joined = False  # counted online (then in its groups and the heartbeat)
    delivered = 0  # the number of the newest message this socket has been sent
    presence_version = 0  # the version of the room's presence list the page has

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
        self.invalid_frames = limits.InvalidFrames()
        # Accepted at once, before the join's work: a client gives up on a handshake
        # that takes too long, and tries again. After a server restart, a thousand
        # handshakes each waiting for all the joins would all time out, and the work
        # done for them would be lost (notes/performance.md: the reconnect storm).
        # Accepted even without a user, so that the close code reaches the page (a
        # refused handshake gives the browser no code at all).
        await self.accept()
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_LOGIN_REQUIRED)
            return
        # Then the joins take turns: the first sockets back are served first, rather
        # than every one of them slowly at once.
        async with joins_in_turn():
            await self.join()

    async def join(self):
        # Counted online, unless the user has too many sockets open already: one
        # step, so that two sockets opening at once cannot both pass the cap.
        if not await online.backend().enter(
            self.room_name, self.user, self.channel_name
        ):
            await self.close(code=CLOSE_POLICY_VIOLATION)
            return
        self.session_key = self.scope["session"].session_key
        self.joined = True  # from here on, leave() undoes all of it
        # In the room's group before the history is read: a message stored in
        # between comes twice (in the history, then as an event, which is skipped),
        # but none can fall between the two.
        await self.join_groups()
        try:
            after = protocol.requested_after(self.scope["query_string"])
        except Refused as refusal:
            await self.send_json(refusal.frame())
            after = None
        await self.send_history(after)
        # Who is online, as the room was last told: the page applies the room's
        # changes to it from here on (chat_presence_diff).
        await self.send_whole_presence()
        announce_presence_soon(self.channel_layer, self.room_name)
        # From now on the process's heartbeat joins this socket's groups again now
        # and then, keeps its presence fresh, and catches up what the layer dropped
        # (chat/heartbeat.py).
        heartbeat().add(self)

    async def disconnect(self, close_code):
        await self.leave()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """A frame from the browser. Anything but a valid message gets an "error"
        frame; the socket stays open and nothing is broadcast. Too many of those,
        and the socket is closed (4008)."""
        if not self.joined:
            return
        try:
            message = protocol.parse(text_data, bytes_data)
        except Refused as refusal:
            if self.invalid_frames.too_many():
                await self.close(code=CLOSE_POLICY_VIOLATION)
            else:
                await self.send_json(refusal.frame())
            return
        # Stored and broadcast with the room's other waiting messages (chat/writer.py).
        sent = await writer.send_message(
            self.channel_layer, self.room_name, self.user, message
        )
        if sent is None:
            limit = settings.CHAT_MAX_MESSAGES_PER_SECOND
            return await self.send_json(
                Refused("rate_limited", message, limit=limit).frame()
            )
        frame, _ = sent
        if message.client_id is not None:
            # Stored: the page stops keeping it to send again.
            await self.send_json(
                {"type": "ack", "client_id": message.client_id, "id": frame["id"]}
            )

    # --- Channel layer handlers: the room's group talks to us ----------------------

    async def dispatch(self, message):
        """Run the handler for an event from the browser or the channel layer.

        Channels' own dispatch first closes stale database connections, in the
        database thread, before every handler: a trip to that thread for every event
        every socket receives, a thousand for one message in a room of a thousand.
        These handlers reach the database only through database_sync_to_async, which
        does that itself, so they are called directly (notes/performance.md).
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def chat_messages(self, event):
        """A batch of the room's messages, [number, frame] each, in number order: one
        event for the batch, so that this consumer wakes once for all of them."""
        for number, frame in event["messages"]:
            if number <= self.delivered:
                continue  # already sent, in the history or by a catch-up
            if number > self.delivered + 1:
                # Messages before this one have not reached this socket: the channel
                # layer dropped them (this socket's channel was full), or another
                # process's broadcast is still on its way. Each was stored before it
                # was broadcast, so the database has them all, in order: fetch them
                # now (the rest of this batch with them).
                await self.catch_up()
                return
            await self.send(text_data=frame)
            self.delivered = number

    async def chat_catch_up(self, event):
        """From the heartbeat, which saw the room's newest message. The events queued
        before this one have been handled by now: if they brought it, nothing to do."""
        if self.delivered < event["newest"]:
            await self.catch_up()
        if self.presence_version < event.get("presence_version", 0):
            await self.send_whole_presence()

    async def chat_presence_diff(self, event):
        """Who came and who left. Changes are numbered: one this page already has is
        skipped; after a missing one (sent by another process, still on its way, or
        dropped by the layer) the page gets the whole list again."""
        version = event["version"]
        if version <= self.presence_version:
            return
        if version == self.presence_version + 1:
            await self.send(text_data=event["frame"])
            self.presence_version = version
            return
        await self.send_whole_presence()

    async def send_whole_presence(self):
        self.presence_version, users = await online.backend().told(self.room_name)
        await self.send_json(
            {"type": "presence", "room": self.room_name, "users": users}
        )

    async def chat_logout(self, event):
        """The session ended: logged out in another tab of this browser, or found
        ended by the heartbeat (expired, password changed, ...)."""
        await self.close(code=CLOSE_LOGIN_REQUIRED)

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
        """This socket's groups. The heartbeat calls it again: joining a group twice
        is harmless, and repairs a lost membership."""
        for group in self.groups_to_join():
            await self.channel_layer.group_add(group, self.channel_name)

    async def leave_groups(self):
        for group in self.groups_to_join():
            await self.channel_layer.group_discard(group, self.channel_name)

    def groups_to_join(self):
        """The room, everyone (notifications), and this login session (logout)."""
        return [
            self.room_group_name,
            NOTIFICATIONS,
            session_group(self.session_key),
        ]

    async def leave(self):
        """Leave the room, once, whether the socket closed or the consumer failed."""
        if not self.joined:
            return
        self.joined = False
        heartbeat().discard(self)
        await self.leave_groups()
        await online.backend().leave(self.room_name, self.user, self.channel_name)
        announce_presence_soon(self.channel_layer, self.room_name)

    async def send_history(self, after):
        """The room's latest messages, or with ?after=N the messages after N, a
        page at a time. The frame says which number it follows, so that a page can
        tell, and how many it left out, if any (see catch_up)."""
        start, frames = await database_sync_to_async(store.history)(
            self.room_name, after, settings.CHAT_HISTORY_LENGTH
        )
        skipped = start - after if after is not None and start > after else 0
        await self.send_history_frame(start, frames, skipped)
        self.delivered = frames[-1]["id"] if frames else start
        if len(frames) == settings.CHAT_HISTORY_PAGE:
            await self.catch_up()  # the rest of it

    async def catch_up(self):
        """Send, from the database, the messages newer than this socket has: a page
        at a time, and at most the room's newest CHAT_CATCH_UP_LIMIT. (A page away
        for a month starts again from those, in a history frame that says how many
        it skipped.)"""
        page_size = settings.CHAT_HISTORY_PAGE
        while True:
            start, frames = await database_sync_to_async(store.messages_after)(
                self.room_name, self.delivered, page_size, settings.CHAT_CATCH_UP_LIMIT
            )
            if start > self.delivered:
                await self.send_history_frame(start, frames, start - self.delivered)
            else:
                for frame in frames:
                    await self.send_json(frame)
            self.delivered = frames[-1]["id"] if frames else start
            if len(frames) < page_size:
                return

    async def send_history_frame(self, after, frames, skipped):
        history = {"type": "history", "room": self.room_name, "after": after}
        history["messages"] = frames
        await self.send_json({**history, "skipped": skipped} if skipped else history)


class NoSuchPath(AsyncJsonWebsocketConsumer):
    """A WebSocket to a path the chat does not serve: refused at the handshake."""

    async def connect(self):
        await self.close()
