from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from chat.groups import NOTIFICATIONS, room_group
from chat.room_names import is_valid_room_name


class Command(BaseCommand):
    help = "Send a notification to every connected user, or to one room (--room)."

    def add_arguments(self, parser):
        parser.add_argument("text", help="what the notification says")
        parser.add_argument("--room", help="only this room (default: every room)")

    def handle(self, *args, text, room=None, **options):
        layer = get_channel_layer()
        if isinstance(layer, InMemoryChannelLayer):
            # This command is another process: an in-memory layer here is an empty
            # one of its own, and nobody would ever receive the notification.
            raise CommandError(
                "The channel layer is in memory, so this command cannot reach the"
                " server: it runs in another process, with a channel layer of its own."
                " Run the server and this command with the same REDIS_URL"
                " (for example REDIS_URL=redis://127.0.0.1:6379/0)."
            )
        if room is not None and not is_valid_room_name(room):
            raise CommandError(f"There can be no room called {room!r}.")
        group = room_group(room) if room else NOTIFICATIONS
        event = {
            "type": "chat.notification",
            "text": text,
            "room": room,
            "created": timezone.now().isoformat().replace("+00:00", "Z"),
        }
        async_to_sync(layer.group_send)(group, event)
        where = f"room {room}" if room else "every connected user"
        self.stdout.write(f"Sent to {where}: {text}")
