"""What the chat does when something happens elsewhere in Django."""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver


def session_group(session_key):
    """Every socket opened with one login session (all the tabs of one browser)."""
    return f"session_{session_key}"


@receiver(user_logged_out)
def close_the_sessions_sockets(sender, request, user, **kwargs):
    """Logging out in one tab closes that session's sockets in every tab, at once,
    rather than leaving them chatting until they reconnect."""
    if request is not None and request.session.session_key:
        async_to_sync(get_channel_layer().group_send)(
            session_group(request.session.session_key), {"type": "chat.logout"}
        )
