"""The channel layer groups the chat uses, named in one place: the consumers join
them, and whoever speaks to them (manage.py notify) sends to the same names."""

# Every connected socket, for `manage.py notify` without --room.
NOTIFICATIONS = "notifications"


def room_group(room_name):
    """Every socket in one room."""
    return f"chat_{room_name}"


def session_group(session_key):
    """Every socket opened with one login session (all the tabs of one browser)."""
    return f"session_{session_key}"
