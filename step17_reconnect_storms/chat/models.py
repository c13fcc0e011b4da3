from django.conf import settings
from django.db import models


class Room(models.Model):
    """A chat room, created by its first message. Counts its messages."""

    name = models.CharField(max_length=94, unique=True)
    # The number of the room's newest message: each message gets the next one.
    last_number = models.PositiveBigIntegerField(default=0)

    def __str__(self):
        return self.name


class Message(models.Model):
    """One chat message, stored before anyone receives it.

    `number` counts the room's messages 1, 2, 3... with no gaps, so that a client
    (or a consumer) that has message 41 and receives 44 knows that 42 and 43 are
    missing, and a reconnecting client asks for "everything after 41".
    """

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="messages")
    number = models.PositiveBigIntegerField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.TextField()
    created = models.DateTimeField(auto_now_add=True)
    # Made by the page for each message it sends, and sent again with it after a
    # reconnection, so that a message is stored once however often it is sent.
    # None from a client that sends no id (NULLs never clash in a unique index).
    client_id = models.CharField(max_length=64, null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["room", "number"], name="one_number_per_room"
            ),
            models.UniqueConstraint(
                fields=["author", "client_id"], name="one_message_per_client_id"
            ),
        ]
        ordering = ["room", "number"]

    def __str__(self):
        return f"{self.room.name} #{self.number} {self.author}: {self.text[:40]}"
