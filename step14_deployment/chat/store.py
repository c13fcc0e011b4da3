"""Everything the consumer asks of the database, in one place.

Plain synchronous functions using the Django ORM. The consumer calls them through
database_sync_to_async, which runs them in a worker thread (the ORM may block, and
must not run on the event loop) and closes stale database connections, as Django
does at the end of a request.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.models import Session
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from .models import Message, Presence, Room

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


def take_next_number(room_name: str) -> Room:
    """Add one to the room's last_number, and return the room with the new number.

    One UPDATE takes it: the database lets one transaction at a time change the
    row, so two messages never get the same number, and the lower number is
    committed first. RETURNING reads the new number in the same statement (Django's
    update() returns only a count): PostgreSQL has it, and SQLite since 3.35.
    """
    table = connection.ops.quote_name(Room._meta.db_table)
    with connection.cursor() as cursor:
        if connection.features.can_return_columns_from_insert:
            cursor.execute(
                f"UPDATE {table} SET last_number = last_number + 1 WHERE name = %s"
                " RETURNING id, last_number",
                [room_name],
            )
        else:  # an older SQLite: the same, in two statements
            cursor.execute(
                f"UPDATE {table} SET last_number = last_number + 1 WHERE name = %s",
                [room_name],
            )
            cursor.execute(
                f"SELECT id, last_number FROM {table} WHERE name = %s", [room_name]
            )
        row = cursor.fetchone()
    if row is None:  # the room's first message: the room comes first
        Room.objects.get_or_create(name=room_name)
        return take_next_number(room_name)
    return Room(id=row[0], name=room_name, last_number=row[1])


def sent_before(user, client_id: str) -> dict | None:
    message = Message.objects.filter(author=user, client_id=client_id)
    message = message.select_related("room", "author").first()
    return message_frame(message) if message else None


def messages_after(
    room_name: str, after: int, limit: int, newest_only: int
) -> tuple[int, list[dict]]:
    """At most `limit` of the room's messages numbered above `after`, oldest first,
    but none older than the room's newest `newest_only`. Returns the number they
    follow (`after`, or higher if older ones were left out) and the messages."""
    rooms = Room.objects.filter(name=room_name)
    newest = rooms.values_list("last_number", flat=True).first() or 0
    start = min(max(after, newest - newest_only), newest)
    query = Message.objects.filter(room__name=room_name, number__gt=start)
    # Not the room's presence list: decoded for every row, it cost more than the rows.
    query = query.select_related("room", "author").defer("room__present")
    query = query.order_by("number")[:limit]
    return start, [message_frame(message) for message in query]


def history(room_name: str, after: int | None, count: int) -> tuple[int, list[dict]]:
    """What a socket gets on joining, and the number of the message it follows:
    the first page of the messages after `after` (the newest a reconnecting page
    has), or without it, or if the room has none that new (a restored database), the
    `count` newest."""
    newest = Room.objects.filter(name=room_name).values_list("last_number", flat=True)
    newest = newest.first() or 0
    if after is not None and after <= newest:
        return messages_after(
            room_name, after, settings.CHAT_HISTORY_PAGE, settings.CHAT_CATCH_UP_LIMIT
        )
    frames = latest_messages(room_name, count)
    return (frames[0]["id"] - 1 if frames else newest), frames


def latest_messages(room_name: str, count: int) -> list[dict]:
    """The room's `count` newest messages, oldest first."""
    query = Message.objects.filter(room__name=room_name).select_related(
        "room", "author"
    )
    query = query.defer("room__present")  # as in messages_after()
    newest = list(query.order_by("-number")[:count])
    return [message_frame(message) for message in reversed(newest)]


# --- presence ---------------------------------------------------------------------------


def enter(room_name: str, user, channel_name: str) -> tuple[int, list[str]]:
    """Count the socket as online in the room. Returns who the room was last told
    is online, and the version of that list: the socket's starting point, to which
    the room's next change (which will include this socket) applies."""
    Presence.objects.create(
        channel_name=channel_name, room=room_name, user=user, seen=timezone.now()
    )
    return presence_of(room_name)


def presence_of(room_name: str) -> tuple[int, list[str]]:
    rooms = Room.objects.filter(name=room_name)
    return rooms.values_list("presence_version", "present").first() or (0, [])


def leave(channel_name: str) -> None:
    Presence.objects.filter(channel_name=channel_name).delete()


def sockets_of(user) -> int:
    """How many live sockets the user has open, in every room and process."""
    cutoff = timezone.now() - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)
    return Presence.objects.filter(user=user, seen__gte=cutoff).count()


@dataclass(frozen=True)
class PresenceChange:
    room: str
    version: int
    joined: list[str]
    left: list[str]


def presence_changes(room_names: set[str]) -> list[PresenceChange]:
    """For each of these rooms whose users online (with at least one live socket)
    differ from what the room was last told: record the new list, and return who
    came and who left. Several processes may ask at once: the version only moves
    from the one each read, so each change is recorded, and returned, once; and
    what was told is read before who is online, so that a list read earlier than
    the last one recorded never replaces it."""
    names = sorted(room_names)
    for name in set(names) - set(
        Room.objects.filter(name__in=names).values_list("name", flat=True)
    ):
        Room.objects.get_or_create(name=name)
    told = {}
    for batch in chunks(names):
        rooms = Room.objects.filter(name__in=batch)
        rows = rooms.values_list("name", "presence_version", "present")
        told.update((name, (version, present)) for name, version, present in rows)
    online = users_online(names)
    changes = []
    for name in names:
        (version, present), now_online = told[name], online[name]
        while now_online != present:
            rooms = Room.objects.filter(name=name, presence_version=version)
            if rooms.update(present=now_online, presence_version=version + 1):
                joined = sorted(set(now_online) - set(present))
                left = sorted(set(present) - set(now_online))
                changes.append(PresenceChange(name, version + 1, joined, left))
                break
            # Another process was first: read both again, in the same order.
            version, present = presence_of(name)
            now_online = users_online([name])[name]
    return changes


def users_online(room_names: list[str]) -> dict[str, list[str]]:
    """Each room's users with at least one live socket, sorted."""
    cutoff = timezone.now() - timedelta(seconds=settings.PRESENCE_TIMEOUT_SECONDS)
    online = defaultdict(set)
    for names in chunks(room_names):
        rows = Presence.objects.filter(room__in=names, seen__gte=cutoff)
        for room, username in rows.values_list("room", "user__username").distinct():
            online[room].add(username)
    return {name: sorted(online[name]) for name in room_names}


def beat(channel_names: list[str], room_names: set[str]) -> dict[str, tuple]:
    """The heartbeat's database work, for all the sockets of a process at once:
    they are still here; returns each room's newest message number and presence
    version."""
    now = timezone.now()
    for names in chunks(channel_names):
        Presence.objects.filter(channel_name__in=names).update(seen=now)
    newest = {}
    for names in chunks(sorted(room_names)):
        rooms = Room.objects.filter(name__in=names)
        newest.update(
            (name, (number, version))
            for name, number, version in rooms.values_list(
                "name", "last_number", "presence_version"
            )
        )
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
