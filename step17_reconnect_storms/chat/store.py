"""Everything the consumer asks of the database, in one place.

Plain synchronous functions using the Django ORM. The consumer calls them through
database_sync_to_async, which runs them in a worker thread (the ORM may block, and
must not run on the event loop) and closes stale database connections, as Django
does at the end of a request.
"""

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from .models import Message, Room

User = get_user_model()


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


# A history reads only what a frame needs, as plain values: after a restart every
# page reads what it missed at once, and making a message, a room and an author object
# of each row cost four times the query (notes/performance.md).
FRAME_COLUMNS = ("number", f"author__{User.USERNAME_FIELD}", "text", "created")


def frames_from(room_name: str, rows) -> list[dict]:
    """message_frame() of each row of FRAME_COLUMNS' values."""
    return [
        {"type": "message", "room": room_name, "id": number, "author": author}
        | {"text": text, "created": created.isoformat().replace("+00:00", "Z")}
        for number, author, text, created in rows
    ]


def save_message(
    room_name: str, user, text: str, client_id: str | None = None
) -> tuple[dict, bool]:
    """Store a message with the room's next number. Returns its frame, and whether
    it is new: a message whose client id this user has sent before is not stored
    again (the unique constraint refuses it), and its frame is the one stored the
    first time. Two statements in the usual case: every message pays for each."""
    try:
        with transaction.atomic():
            room = take_next_number(room_name)
            message = Message.objects.create(
                room=room,
                number=room.last_number,
                author=user,
                text=text,
                client_id=client_id,
            )
    except IntegrityError:
        # Sent before (a page sending again after reconnecting), or at the same
        # moment on another socket: this transaction, and the number it took, are
        # rolled back.
        earlier = sent_before(user, client_id) if client_id is not None else None
        if earlier is None:
            raise
        return earlier, False
    return message_frame(message), True


def save_messages(room_name: str, messages: list[tuple]) -> list[tuple[dict, bool]]:
    """save_message() for each (user, text, client id) in turn, numbered in that
    order, in one transaction: two statements for all of them, and one commit. If one
    of them was sent before, the whole batch is rolled back (it took no numbers) and
    its messages are stored one at a time, each as save_message() does; one the
    database refuses then gets its error in its place, and the others are stored."""
    if len(messages) == 1:  # alone: save_message() costs less than a bulk insert
        return [save_message(room_name, *messages[0])]
    try:
        with transaction.atomic():
            room = take_next_number(room_name, len(messages))
            first = room.last_number - len(messages) + 1
            stored = Message.objects.bulk_create(
                Message(room=room, number=first + i, author=user, text=text,
                        client_id=client_id)
                for i, (user, text, client_id) in enumerate(messages)
            )  # fmt: skip
    except IntegrityError:
        # Rare: a page sending again after reconnecting (or a sender deleted
        # meanwhile). Then each on its own, and a message refused fails alone.
        return [saved_alone(room_name, message) for message in messages]
    return [(message_frame(message), True) for message in stored]


def saved_alone(room_name: str, message: tuple) -> tuple[dict, bool] | Exception:
    try:
        return save_message(room_name, *message)
    except IntegrityError as error:
        return error


def take_next_number(room_name: str, count: int = 1) -> Room:
    """Add `count` to the room's last_number, and return the room with the new number.

    One UPDATE takes it: the database lets one transaction at a time change the
    row, so two messages never get the same number, and the lower number is
    committed first. RETURNING reads the new number in the same statement (Django's
    update() returns only a count): PostgreSQL has it, and SQLite since 3.35.
    """
    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        if connection.features.can_return_columns_from_insert:
            cursor.execute(
                f"UPDATE {table} SET last_number = last_number + %s WHERE name = %s"
                " RETURNING id, last_number",
                [count, room_name],
            )
        else:  # an older SQLite: the same, in two statements
            cursor.execute(
                f"UPDATE {table} SET last_number = last_number + %s WHERE name = %s",
                [count, room_name],
            )
            cursor.execute(
                f"SELECT id, last_number FROM {table} WHERE name = %s", [room_name]
            )
        row = cursor.fetchone()
    if row is None:  # the room's first message: the room comes first
        Room.objects.get_or_create(name=room_name)
        return take_next_number(room_name, count)
    return Room(id=row[0], name=room_name, last_number=row[1])


def sent_before(user, client_id: str) -> dict | None:
    message = Message.objects.filter(author=user, client_id=client_id)
    message = message.select_related("room", "author").first()
    return message_frame(message) if message else None


def messages_after(
    room_name: str, after: int, limit: int, newest_only: int, newest=None
) -> tuple[int, list[dict]]:
    """At most `limit` of the room's messages numbered above `after`, oldest first,
    but none older than the room's newest `newest_only`. Returns the number they
    follow (`after`, or higher if older ones were left out) and the messages."""
    if newest is None:  # history() has read it already
        rooms = Room.objects.filter(name=room_name)
        newest = rooms.values_list("last_number", flat=True).first() or 0
    start = min(max(after, newest - newest_only), newest)
    query = Message.objects.filter(room__name=room_name, number__gt=start)
    rows = query.order_by("number").values_list(*FRAME_COLUMNS)[:limit]
    return start, frames_from(room_name, rows)


def history(room_name: str, after: int | None, count: int) -> tuple[int, list[dict]]:
    """What a socket gets on joining, and the number of the message it follows:
    the first page of the messages after `after` (the newest a reconnecting page
    has), or without it, or if the room has none that new (a restored database), the
    `count` newest."""
    newest = Room.objects.filter(name=room_name).values_list("last_number", flat=True)
    newest = newest.first() or 0
    if after is not None and after <= newest:
        page, limit = settings.CHAT_HISTORY_PAGE, settings.CHAT_CATCH_UP_LIMIT
        return messages_after(room_name, after, page, limit, newest)
    frames = latest_messages(room_name, count)
    return (frames[0]["id"] - 1 if frames else newest), frames


def latest_messages(room_name: str, count: int) -> list[dict]:
    """The room's `count` newest messages, oldest first."""
    query = Message.objects.filter(room__name=room_name).order_by("-number")
    newest = list(query.values_list(*FRAME_COLUMNS)[:count])
    return frames_from(room_name, reversed(newest))


def newest_numbers(room_names: set[str]) -> dict[str, int]:
    """The heartbeat's database work, for all the sockets of a process at once: each
    room's newest message number."""
    newest = {}
    for names in chunks(sorted(room_names)):
        rooms = Room.objects.filter(name__in=names)
        newest.update(rooms.values_list("name", "last_number"))
    return newest


def ended_sessions(logins: set[tuple[str, int]]) -> set[tuple[str, int]]:
    """Of these (session key, user id) pairs, the logins that have ended: the
    session expired or was deleted (logged out), now holds another user (logged in
    again as someone else), or no longer matches the user (password changed, user
    deactivated): as Django's own check of each request would find."""
    now, valid = timezone.now(), set()
    for batch in chunks(sorted(logins)):
        keys = {key for key, _ in batch}
        sessions = Session.objects.filter(session_key__in=keys, expire_date__gt=now)
        found = {session.session_key: session.get_decoded() for session in sessions}
        users = User.objects.filter(pk__in={pk for _, pk in batch}, is_active=True)
        hashes = {user.pk: user.get_session_auth_hash() for user in users}
        for key, pk in batch:
            data = found.get(key, {})
            if data.get(SESSION_KEY) == str(pk) and pk in hashes:
                if constant_time_compare(data.get(HASH_SESSION_KEY, ""), hashes[pk]):
                    valid.add((key, pk))
    return logins - valid


def chunks(items: list, size: int = 500):
    """SQLite allows a limited number of parameters in one query."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
