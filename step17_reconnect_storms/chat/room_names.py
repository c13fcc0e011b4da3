"""Which names a chat room can have.

Differs from the official tutorial: there, any name the URL accepts became a room,
and the room's group name "chat_<room name>" went straight to the channel layer.
A channel layer only accepts group names made of ASCII letters, digits, hyphens,
underscores and periods, shorter than 100 characters, so a room such as "café"
(or a 150-character name) crashed the consumer with a TypeError. The room page and
the consumer both ask is_valid_room_name() first, and the rule is Channels' own.
"""

from channels.layers import BaseChannelLayer

from .groups import room_group

ROOM_NAME_RULE = (
    "A room name can use only ASCII letters, digits, hyphens (-), underscores (_)"
    " and periods (.), and at most 94 characters."
)


# The rule every Channels layer shares. Asked of Channels itself rather than of the
# configured layer: the Redis pub/sub layer does not implement the check.
CHANNELS_NAMING_RULE = BaseChannelLayer()


def is_valid_room_name(room_name):
    """True when a channel layer accepts the room's group name, "chat_<room name>"."""
    try:
        CHANNELS_NAMING_RULE.require_valid_group_name(room_group(room_name))
    except TypeError:
        return False
    return True
