import asyncio
import json
import re
import reprlib
import weakref
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
)
from django.conf import settings

from . import limits, store
from .heartbeat import heartbeat
from .room_names import is_valid_room_name
from .signals import session_group

# Close code for a socket opened without a logged-in user: the page sends the
# visitor to the login page when it sees it. (Codes 4000-4999 are for applications.)
CLOSE_LOGIN_REQUIRED = 4401
# Everyone connected is in this group, for `manage.py notify` without --room.
NOTIFICATIONS_GROUP = "notifications"
# Rooms of this process with a presence broadcast already on its way.
PENDING_PRESENCE = set()
BACKGROUND_TASKS = set()
# One lock per room and event loop (an asyncio lock belongs to one event loop).
ROOM_LOCKS = weakref.WeakKeyDictionary()
# A message number in ?after=: ASCII digits that fit the database's integer.
MESSAGE_NUMBER = re.compile(r"[0-9]{1,18}")


def room_lock(room_name):
    """Held while one of the room's messages is numbered and broadcast, so that this
    process broadcasts a room's messages one at a time, in number order."""
    locks = ROOM_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(room_name, asyncio.Lock())


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One logged-in user's socket in one room.

    Speaks the JSON protocol of the README: the browser sends {"type": "message",
    "text": ...}; the server sends "history", "message", "presence", "notification"
    and "error" frames. Every message is stored before it is broadcast, and numbered
    within its room, so that a socket that missed some gets them from the database.
    """

    joined = False  # in the room's group and the heartbeat, with a presence row
    delivered = 0  # the number of the newest message this socket has been sent

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A send to a socket that dropped a moment earlier can end the consumer
            # before its websocket.disconnect arrives: uvicorn raises
            # ClientDisconnected from send(), and then disconnect() never runs
            # (django/channels issue 1466). Leave however the consumer ends, or the
            # user would stay "online" and in the groups for good.
            await self.leave()

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
            self.session_key = self.scope["session"].session_key
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
        await self.send_history(await self.requested_after())
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
        if text_data is None:
            return await self.send_error(
                "binary_frame", "Frames must be JSON text, not binary."
            )
        # Measured before parsing: a huge frame costs no more than this. (The ASGI
        # server closes a socket that sends one bigger still: see the README.)
        limit = settings.CHAT_MAX_FRAME_BYTES
        if len(text_data) > limit or utf8_length(text_data) > limit:
            return await self.send_error(
                "frame_too_large", f"A frame can be at most {limit} bytes."
            )
        try:
            content = json.loads(text_data)
        except ValueError as error:
            return await self.send_error(
                "invalid_json", f"The frame is not valid JSON: {error}."
            )
        except RecursionError:
            return await self.send_error(
                "invalid_json", "The frame is not valid JSON: nested too deeply."
            )
        if not isinstance(content, dict) or "type" not in content:
            return await self.send_error(
                "invalid_frame", 'A frame must be a JSON object with a "type".'
            )
        if content["type"] != "message":
            return await self.send_error(
                "unknown_type",
                # reprlib: a short picture of whatever was sent, however big.
                f"Unknown frame type {reprlib.repr(content['type'])}: a client sends"
                ' only {"type": "message", "text": "..."}.',
            )
        await self.receive_message(content)

    async def receive_message(self, content):
        if "text" not in content:
            return await self.send_error("missing_text", 'A message needs a "text".')
        text = content["text"]
        if not isinstance(text, str):
            return await self.send_error(
                "text_not_string", "A message's text must be a string."
            )
        if not text.strip():
            return await self.send_error("empty_text", "A message cannot be empty.")
        # JSON can spell text that is not Unicode, which no database can store:
        # half of a UTF-16 surrogate pair ("\ud800"); or a NUL character, which
        # PostgreSQL cannot store in text. Both found by Hypothesis.
        if "\x00" in text or utf8_length(text) is None:
            return await self.send_error(
                "invalid_text",
                "A message's text must be valid Unicode, without NUL characters.",
            )
        # A message refused from here on comes back with its text, for the page to
        # give back to its writer.
        limit = settings.CHAT_MAX_MESSAGE_BYTES
        if utf8_length(text) > limit:
            return await self.send_error(
                "text_too_long",
                f"A message can be at most {limit} bytes (UTF-8).",
                text,
            )
        if not await limits.allow_message(self.user):
            return await self.send_error(
                "rate_limited",
                f"At most {settings.CHAT_MAX_MESSAGES_PER_SECOND} messages a second;"
                " this one was not sent.",
                text,
            )
        async with room_lock(self.room_name):
            # Stored first: once it is in the database, nobody can lose it for good.
            # The ORM blocks, so it runs in a worker thread, off the event loop.
            frame = await database_sync_to_async(store.save_message)(
                self.room_name, self.user, text
            )
            await self.channel_layer.group_send(
                self.room_group_name,
                {
                    "type": "chat.message",
                    "number": frame["id"],
                    # Encoded once here, not once for each member of the room.
                    "frame": json.dumps(frame),
                },
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
        await self.send(text_data=event["frame"])
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

    async def chat_logout(self, event):
        """The user logged out in another tab of this browser: the session is gone."""
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
        """This socket's room, and everyone (for notifications). The heartbeat calls
        it again: joining a group twice is harmless, and repairs a lost membership."""
        for group in self.groups_to_join():
            await self.channel_layer.group_add(group, self.channel_name)

    async def leave_groups(self):
        for group in self.groups_to_join():
            await self.channel_layer.group_discard(group, self.channel_name)

    def groups_to_join(self):
        """The room, everyone (notifications), and this login session (logout)."""
        return [
            self.room_group_name,
            NOTIFICATIONS_GROUP,
            session_group(self.session_key),
        ]

    async def leave(self):
        """Leave the room, once, whether the socket closed or the consumer failed."""
        if not self.joined:
            return
        self.joined = False
        heartbeat().discard(self)
        await self.leave_groups()
        await database_sync_to_async(store.leave)(self.channel_name)
        await self.broadcast_presence()

    async def requested_after(self):
        """The number a reconnecting page says it has already (?after=41), or None."""
        query = parse_qs(self.scope["query_string"].decode("latin-1"))
        if "after" not in query:
            return None
        value = query["after"][0]
        if MESSAGE_NUMBER.fullmatch(value):
            return int(value)
        await self.send_error(
            "invalid_after",
            "?after= must be the number of a message; here are the latest instead.",
        )
        return None

    async def send_history(self, after):
        """The room's latest messages, or with ?after=N the messages after N."""
        if after is not None:
            self.delivered = after
            return await self.catch_up(as_history=True)
        frames = await database_sync_to_async(store.latest_messages)(
            self.room_name, settings.CHAT_HISTORY_LENGTH
        )
        await self.send_json(
            {"type": "history", "room": self.room_name, "messages": frames}
        )
        if frames:
            self.delivered = frames[-1]["id"]

    async def catch_up(self, as_history=False):
        """Send, from the database, the messages newer than this socket has: a page
        at a time, and at most the room's newest CHAT_CATCH_UP_LIMIT. (A page away
        for a month starts again from those; its history frame says how many it
        skipped.)"""
        page_size = settings.CHAT_HISTORY_PAGE
        while True:
            start, frames = await database_sync_to_async(store.messages_after)(
                self.room_name, self.delivered, page_size, settings.CHAT_CATCH_UP_LIMIT
            )
            skipped, self.delivered = max(0, start - self.delivered), start
            if as_history:
                page = {"type": "history", "room": self.room_name, "messages": frames}
                await self.send_json({**page, "skipped": skipped} if skipped else page)
            else:
                for frame in frames:
                    await self.send_json(frame)
            if frames:
                self.delivered = frames[-1]["id"]
            if len(frames) < page_size:
                return

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

    async def send_error(self, code, detail, text=None):
        error = {"type": "error", "code": code, "detail": detail}
        await self.send_json(error if text is None else {**error, "text": text})


class NoSuchPath(AsyncWebsocketConsumer):
    """A WebSocket to a path the chat does not serve: refused at the handshake."""

    async def connect(self):
        await self.close()


def utf8_length(text):
    """How many bytes the text takes in UTF-8; None if it is not valid Unicode."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None
