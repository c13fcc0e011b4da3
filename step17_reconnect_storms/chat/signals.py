"""What the chat does when something happens elsewhere in Django."""

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from .groups import session_group

logger = logging.getLogger(__name__)


@receiver(user_logged_out)
def close_the_sessions_sockets(sender, request, user, **kwargs):
    """Logging out in one tab closes that session's sockets in every tab, at once,
    rather than leaving them chatting until they reconnect."""
    if request is None or not request.session.session_key:
        return
    try:
        async_to_sync(tell_the_session)(request.session.session_key)
    except Exception as error:
        # Redis is down: logging out must still work (Django ends the session after
        # this), and the heartbeat closes the sockets of an ended session.
        logger.warning("Logged out; the tabs will hear of it later: %r", error)


async def tell_the_session(session_key):
    # Not the channel layer's own retries, which can take many seconds.
    await asyncio.wait_for(
        get_channel_layer().group_send(
            session_group(session_key), {"type": "chat.logout"}
        ),
        timeout=2,
    )
