"""Which pages may open a WebSocket: the check of each handshake's Origin header.

A browser sends the session cookie with a handshake whatever page opens it, so a
socket opened by another site's page would chat as you: the Origin header, which a
page cannot forge, says whose page it is. Channels' AllowedHostsOriginValidator
compares only its host with ALLOWED_HOSTS: http://chat.example.com:8080 (another
program on the same host) passes for https://chat.example.com (see the README).
"""

from urllib.parse import urlparse

from channels.security.websocket import (
    AllowedHostsOriginValidator,
    OriginValidator,
    WebsocketDenier,
)
from django.conf import settings


class OriginCheck(OriginValidator):
    """With CSRF_TRUSTED_ORIGINS set, the Origin must be one of them, scheme and port
    included (the site's own too, unlike Django's form check); else ALLOWED_HOSTS."""

    def __init__(self, application):
        # Read once, when the server starts, as AllowedHostsOriginValidator reads them.
        trusted = settings.CSRF_TRUSTED_ORIGINS
        if not trusted:
            hosts = AllowedHostsOriginValidator(application).allowed_origins
            return super().__init__(application, hosts)
        # Django writes "any subdomain" https://*.example.com, Channels https://.example.com
        super().__init__(application, [o.replace("://*.", "://.") for o in trusted])

    async def __call__(self, scope, receive, send):
        try:
            for name, value in scope["headers"]:
                if name == b"origin":  # parsed as Channels will parse it
                    _ = urlparse(value.decode("latin1")).port
        except ValueError:  # "http://[::1", or a port over 65535: Channels may raise
            return await WebsocketDenier()(scope, receive, send)
        return await super().__call__(scope, receive, send)
