import asyncio
import json
import math
import time
import weakref
from collections import deque
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from . import store
from .heartbeat import heartbeat
from .room_names import is_valid_room_name

# Close code for a socket opened without a logged-in user. The page sends the
# visitor to the login page when it sees it. (4000-4999 are for applications.)
CLOSE_LOGIN_REQUIRED = 4401
# Everyone connected is in this group, for `manage.py notify` without --room.
NOTIFICATIONS_GROUP = "notifications"
# History is sent in frames of at most this many messages.
HISTORY_FRAME_SIZE = 500
# Rooms of this process with a presence broadcast already on its way.
PENDING_PRESENCE = set()
BACKGROUND_TASKS = set()
# One lock per room and event loop (asyncio locks belong to one loop).
ROOM_LOCKS = weakref.WeakKeyDictionary()


def room_lock(room_name):
    locks = ROOM_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(room_name, asyncio.Lock())


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One logged-in user's socket in one room.

    Speaks the JSON protocol of the README: the browser sends {"type": "message",
    "text": ...}; the server sends "history", "message", "presence", "notification"
    and "error" frames. Every message is stored before it is broadcast, and numbered
    within its room, so a socket that missed some (a full channel, a reconnect, a
    restart) gets them from the database.
    """

    joined = False  # in the room's group, with a presence row and a heartbeat

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            # A send to a socket that dropped a moment earlier can end the consumer
            # before its websocket.disconnect arrives: uvicorn raises
            # ClientDisconnected from send(), and then disconnect() never runs
            # (django/channels issue 1466). Leave the room however the consumer
            # ends, or the user would stay "online" and in the group for good.
            await self.leave()

    # --- WebSocket handlers: the browser talks to us -------------------------------

    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        self.user = self.scope["user"]
        # Refuse the handshake for a name the channel layer cannot use.
        if not is_valid_room_name(self.room_name):
            await self.close()
            return
        # Accept before refusing an anonymous user, so that the close code reaches
        # the page (a refused handshake gives the browser no code at all).
        await self.accept()
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_LOGIN_REQUIRED)
            return

        # Join the groups first, then read the history: a message stored in between
        # arrives twice (history and event) and the second copy is skipped, but none
        # can fall between the two.
        await self.join_groups()
        self.joined = True
        self.sent_times = deque()  # when this socket's recent messages were sent
        self.delivered = 0  # the number of the newest message this socket has
        self.waiting = {}  # messages that arrived before an earlier one: number -> frame
        self.missing_if_sent_after = math.inf  # see chat_message
        self.last_event_at = time.monotonic()
        self.gap_timer = None
        await self.send_history(self.requested_after())

        await database_sync_to_async(store.enter)(
            self.room_name, self.user, self.channel_name
        )
        await self.broadcast_presence()
        # From now on the process's heartbeat keeps this socket's groups and
        # presence fresh, and catches up what the layer dropped (chat/heartbeat.py).
        heartbeat().add(self)

    async def disconnect(self, close_code):
        await self.leave()

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """A frame from the browser. Anything but a valid message gets an "error"
        frame; the socket stays open and nothing is stored or broadcast."""
        if not self.joined:
            return
        if text_data is None:
            return await self.send_error(
                "binary_frame", "Frames must be JSON text, not binary."
            )
        try:
            content = json.loads(text_data)
        except ValueError as error:
            return await self.send_error(
                "invalid_json", f"The frame is not valid JSON: {error}."
            )
        if not isinstance(content, dict) or "type" not in content:
            return await self.send_error(
                "invalid_frame", 'A frame must be a JSON object with a "type".'
            )
        if content["type"] != "message":
            return await self.send_error(
                "unknown_type",
                f"Unknown frame type {content['type']!r}: a client sends only"
                ' {"type": "message", "text": "..."}.',
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
        limit = settings.CHAT_MAX_MESSAGE_BYTES
        if len(text.encode("utf-8")) > limit:
            return await self.send_error(
                "text_too_long", f"A message can be at most {limit} bytes (UTF-8)."
            )
        if self.over_rate_limit():
            return await self.send_error(
                "rate_limited",
                f"At most {settings.CHAT_MAX_MESSAGES_PER_SECOND} messages a second;"
                " this one was not sent.",
            )

        # Numbered and broadcast one at a time per room in this process, so that the
        # broadcasts leave in number order: messages from two people do not cross.
        async with room_lock(self.room_name):
            # Stored first: once it is in the database, nobody can lose it for good.
            frame = await database_sync_to_async(store.save_message)(
                self.room_name, self.user, text
            )
            await self.channel_layer.group_send(
                self.room_group_name,
                {
                    "type": "chat.message",
                    "number": frame["id"],
                    "sent": time.time(),
                    # Encoded once here, instead of once per member of the room.
                    "frame": json.dumps(frame),
                },
            )

    # --- Channel layer handlers: the room's group talks to us ----------------------

    async def dispatch(self, message):
        # Since Channels 4.2, AsyncConsumer.dispatch first closes stale database
        # connections in the database thread before every handler: a trip to that
        # thread for every event every socket receives, a thousand for one message
        # in a room of a thousand. This consumer reaches the database only through
        # database_sync_to_async, which does that check itself, so it calls its
        # handlers directly and the busiest paths stay on the event loop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def chat_message(self, event):
        self.last_event_at = time.monotonic()
        number = event["number"]
        if number <= self.delivered:
            return  # already sent, from the history or a catch-up
        if number > self.delivered + 1:
            # Messages before this one have not arrived. Usually they are only
            # behind it: two people sent at once and their broadcasts crossed, a few
            # milliseconds apart. A channel is first in, first out, so once an event
            # broadcast more than CHAT_CROSSING_SECONDS after this one has arrived and
            # they still have not, the layer dropped them (this socket's channel was
            # full): then they come from the database.
            self.waiting[number] = event["frame"]
            self.missing_if_sent_after = min(
                self.missing_if_sent_after,
                event["sent"] + settings.CHAT_CROSSING_SECONDS,
            )
            if not self.gap_timer:
                self.gap_timer = asyncio.create_task(self.catch_up_when_idle())
        else:
            await self.send(text_data=event["frame"])
            self.delivered = number
            await self.send_waiting_in_order()
        if self.waiting and event["sent"] > self.missing_if_sent_after:
            await self.catch_up()

    async def chat_catch_up(self, event):
        """Sent to ourselves: by the gap timer, or by the heartbeat, which says how
        far the room had got. Events queued before this one have been handled by
        now: if they brought everything, there is nothing to fetch."""
        if self.delivered < event.get("newest", math.inf):
            await self.catch_up()

    async def chat_presence(self, event):
        await self.send_json(
            {"type": "presence", "room": self.room_name, "users": event["users"]}
        )

    async def chat_notification(self, event):
        await self.send_json(
            {
                "type": "notification",
                "room": event.get("room"),
                "text": event["text"],
                "created": event["created"],
            }
        )

    # --- Helpers -------------------------------------------------------------------

    async def leave(self):
        """Leave the room: once, whether the socket closed or the consumer failed."""
        if not self.joined:
            return
        self.joined = False
        heartbeat().discard(self)
        if self.gap_timer:
            self.gap_timer.cancel()
        await self.leave_groups()
        await database_sync_to_async(store.leave)(self.channel_name)
        await self.broadcast_presence()

    async def join_groups(self):
        """This socket's room, and everyone (for notifications). Also called by the
        heartbeat: joining a group again is harmless, and repairs a lost membership."""
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.channel_layer.group_add(NOTIFICATIONS_GROUP, self.channel_name)

    async def leave_groups(self):
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)
        await self.channel_layer.group_discard(NOTIFICATIONS_GROUP, self.channel_name)

    def requested_after(self):
        """The number a reconnecting page says it has seen (?after=41), or None."""
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        value = query.get("after", [""])[0]
        return int(value) if value.isdigit() else None

    async def send_history(self, after):
        if after is None:
            frames = await database_sync_to_async(store.latest_messages)(
                self.room_name, settings.CHAT_HISTORY_LENGTH
            )
        else:
            frames = await database_sync_to_async(store.messages_after)(
                self.room_name, after
            )
            self.delivered = after
        for start in range(0, max(len(frames), 1), HISTORY_FRAME_SIZE):
            chunk = frames[start : start + HISTORY_FRAME_SIZE]
            await self.send_json(
                {"type": "history", "room": self.room_name, "messages": chunk}
            )
        if frames:
            self.delivered = frames[-1]["id"]

    async def catch_up(self):
        """Send, from the database, everything newer than what this socket has."""
        frames = await database_sync_to_async(store.messages_after)(
            self.room_name, self.delivered
        )
        for frame in frames:
            await self.send_json(frame)
            self.delivered = frame["id"]
        self.waiting = {n: f for n, f in self.waiting.items() if n > self.delivered}
        await self.send_waiting_in_order()

    async def send_waiting_in_order(self):
        while self.delivered + 1 in self.waiting:
            self.delivered += 1
            await self.send(text_data=self.waiting.pop(self.delivered))
        if not self.waiting:
            self.missing_if_sent_after = math.inf

    async def catch_up_when_idle(self):
        """The last messages before a quiet spell can be missing with nothing after
        them to prove it: once no event has come for CHAT_GAP_WAIT_SECONDS, fetch."""
        wait = settings.CHAT_GAP_WAIT_SECONDS
        try:
            while self.waiting:
                await asyncio.sleep(wait)
                if self.waiting and time.monotonic() - self.last_event_at >= wait:
                    # Through our own channel, so that it is handled in turn with
                    # the messages, never at the same time as one.
                    await self.channel_layer.send(
                        self.channel_name, {"type": "chat.catch_up"}
                    )
                    return
        except ChannelFull:
            pass  # events are queued; they will reveal the gap again
        finally:
            self.gap_timer = None

    def over_rate_limit(self):
        now = time.monotonic()
        while self.sent_times and now - self.sent_times[0] >= 1.0:
            self.sent_times.popleft()
        if len(self.sent_times) >= settings.CHAT_MAX_MESSAGES_PER_SECOND:
            return True
        self.sent_times.append(now)
        return False

    async def send_error(self, code, detail):
        await self.send_json({"type": "error", "code": code, "detail": detail})

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
