from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.utils import timezone

from . import protocol
from .protocol import CLOSE_LOGIN_REQUIRED, Refused
from .room_names import is_valid_room_name


class ChatConsumer(AsyncJsonWebsocketConsumer):
    """One logged-in user's socket in one room.

    Speaks the JSON protocol of the README (chat/protocol.py): the browser sends
    {"type": "message", "text": ...}; the server sends "message" frames, which say
    who wrote them, and "error" frames.
    """

    joined = False  # in the room's group

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
            # then on can miss this socket.
            await self.channel_layer.group_add(self.room_group_name, self.channel_name)
            self.joined = True
        # Accepted even without a user, so that the close code reaches the page (a
        # refused handshake gives the browser no code at all).
        await self.accept()
        if not self.user.is_authenticated:
            await self.close(code=CLOSE_LOGIN_REQUIRED)

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
        frame = {
            "type": "message",
            "room": self.room_name,
            # Who wrote it comes from the session, never from the frame.
            "author": self.user.get_username(),
            "text": message.text,
            "created": timezone.now().isoformat().replace("+00:00", "Z"),
        }
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "frame": frame}
        )

    # --- Channel layer handlers: the room's group talks to us ----------------------

    async def chat_message(self, event):
        await self.send_json(event["frame"])
