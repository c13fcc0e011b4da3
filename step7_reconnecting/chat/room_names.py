"""Which names a chat room can have.

Differs from the official tutorial: there, any name the URL accepts became a room,
and the room's group name "chat_<room name>" went straight to the channel layer.
A channel layer only accepts group names made of ASCII letters, digits, hyphens,
underscores and periods, shorter than 100 characters, so a room such as "café"
(or a 150-character name) crashed the consumer with a TypeError. The room page and
the consumer both ask is_valid_room_name() first, and the rule is the layer's own.
"""

from channels.layers import get_channel_layer

ROOM_NAME_RULE = (
    "A room name can use only ASCII letters, digits, hyphens (-), underscores (_)"
    " and periods (.), and at most 94 characters."
)


def is_valid_room_name(room_name):
    """True when the channel layer accepts the room's group name, "chat_<room name>"."""
    try:
        get_channel_layer().require_valid_group_name(f"chat_{room_name}")
    except TypeError:
        return False
    return True
