"""Everything the consumer asks of the database, in one place.

Plain synchronous functions using the Django ORM. The consumer calls them through
database_sync_to_async, which runs them in a worker thread (the ORM may block, and
must not run on the event loop) and closes stale database connections, as Django
does at the end of a request.
"""

from django.db import transaction
from django.db.models import F

from .models import Message, Room


def message_frame(message: Message) -> dict:
    """A stored message as the protocol sends it (see the README: the protocol)."""
    return {
        "type": "message",
        "room": message.room.name,
        "id": message.number,
        "author": message.author.get_username(),
        "text": message.text,
        "created": message.created.isoformat().replace("+00:00", "Z"),
    }


def save_message(room_name: str, user, text: str) -> dict:
    """Store a message with the room's next number; returns its frame."""
    with transaction.atomic():
        room, _ = Room.objects.get_or_create(name=room_name)
        # One UPDATE takes the room's next number. The database lets one
        # transaction at a time change the row, so two messages never get the same
        # number, and the lower number is committed first.
        Room.objects.filter(pk=room.pk).update(last_number=F("last_number") + 1)
        room.refresh_from_db(fields=["last_number"])
        message = Message.objects.create(
            room=room, number=room.last_number, author=user, text=text
        )
    return message_frame(message)


def messages_after(room_name: str, after: int) -> list[dict]:
    """The room's messages numbered above `after`, oldest first."""
    query = Message.objects.filter(room__name=room_name, number__gt=after)
    query = query.select_related("room", "author").order_by("number")
    return [message_frame(message) for message in query]


def latest_messages(room_name: str, count: int) -> list[dict]:
    """The room's `count` newest messages, oldest first."""
    query = Message.objects.filter(room__name=room_name).select_related(
        "room", "author"
    )
    newest = list(query.order_by("-number")[:count])
    return [message_frame(message) for message in reversed(newest)]


def newest_numbers(room_names: set[str]) -> dict[str, int]:
    """The number of each room's newest message, in one query per 500 rooms
    (SQLite allows a limited number of parameters in one query)."""
    names = sorted(room_names)
    newest = {}
    for start in range(0, len(names), 500):
        rooms = Room.objects.filter(name__in=names[start : start + 500])
        newest.update(rooms.values_list("name", "last_number"))
    return newest
