import json

from channels.generic.websocket import AsyncWebsocketConsumer

from .room_names import is_valid_room_name


class ChatConsumer(AsyncWebsocketConsumer):
    """One instance per open socket: joins its room's group and relays messages.

    An asynchronous consumer: every handler is a coroutine that runs on the
    server's event loop, not in the synchronous consumers' shared thread, so the
    channel layer's coroutines are awaited directly. Nothing here may block:
    calling the Django ORM directly would raise SynchronousOnlyOperation (use
    database_sync_to_async).
    """

    # --- WebSocket handlers: the browser talks to us -------------------------------

    async def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"

        # Differs from the official tutorial: refuse the handshake for a name the
        # channel layer cannot use as a group name, instead of crashing on TypeError.
        if not is_valid_room_name(self.room_name):
            await self.close()
            return

        # Join room group: a group is a named set of channels, so one group_send
        # reaches every socket in the room, in this process or (with Redis) another.
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)

        await self.accept()

    async def disconnect(self, close_code):
        # Leave room group (a refused socket never joined one)
        if is_valid_room_name(self.room_name):
            await self.channel_layer.group_discard(
                self.room_group_name, self.channel_name
            )

    # Receive message from WebSocket
    async def receive(self, text_data):
        text_data_json = json.loads(text_data)
        message = text_data_json["message"]

        # Send message to room group. "type" names the handler that each member's
        # consumer runs: "chat.message" calls chat_message() below.
        await self.channel_layer.group_send(
            self.room_group_name, {"type": "chat.message", "message": message}
        )

    # --- Channel layer handlers: the room's group talks to us ----------------------

    # Receive message from room group
    async def chat_message(self, event):
        message = event["message"]

        # Send message to WebSocket
        await self.send(text_data=json.dumps({"message": message}))
