import json

from asgiref.sync import async_to_sync
from channels.generic.websocket import WebsocketConsumer

from .room_names import is_valid_room_name


class ChatConsumer(WebsocketConsumer):
    """One instance per open socket: joins its room's group and relays messages.

    A synchronous consumer: Channels runs each handler off the event loop, in a
    thread that every synchronous consumer of the process shares, so the handlers
    may use blocking code such as the Django ORM directly. The channel layer's
    methods are coroutines, which is why every call to them is wrapped in
    async_to_sync.
    """

    # --- WebSocket handlers: the browser talks to us -------------------------------

    def connect(self):
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"

        # Differs from the official tutorial: refuse the handshake for a name the
        # channel layer cannot use as a group name, instead of crashing on TypeError.
        if not is_valid_room_name(self.room_name):
            self.close()
            return

        # Join room group: a group is a named set of channels, so one group_send
        # reaches every socket in the room, in this process or (with Redis) another.
        async_to_sync(self.channel_layer.group_add)(
            self.room_group_name, self.channel_name
        )

        self.accept()

    def disconnect(self, close_code):
        # Leave room group (a refused socket never joined one)
        if is_valid_room_name(self.room_name):
            async_to_sync(self.channel_layer.group_discard)(
                self.room_group_name, self.channel_name
            )

    # Receive message from WebSocket
    def receive(self, text_data):
        text_data_json = json.loads(text_data)
        message = text_data_json["message"]

        # Send message to room group. "type" names the handler that each member's
        # consumer runs: "chat.message" calls chat_message() below.
        async_to_sync(self.channel_layer.group_send)(
            self.room_group_name, {"type": "chat.message", "message": message}
        )

    # --- Channel layer handlers: the room's group talks to us ----------------------

    # Receive message from room group
    def chat_message(self, event):
        message = event["message"]

        # Send message to WebSocket
        self.send(text_data=json.dumps({"message": message}))
