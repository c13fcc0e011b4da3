"""
ASGI config for mysite project.

It exposes the ASGI callable as a module-level variable named ``application``.

For more information on this file, see
https://docs.djangoproject.com/en/5.2/howto/deployment/asgi/
"""

import os

from channels.auth import AuthMiddlewareStack
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
# Initialize Django ASGI application early to ensure the AppRegistry
# is populated before importing code that may import ORM models.
django_asgi_app = get_asgi_application()

# Imported only now: chat.routing imports the consumers, and anything they import
# that touches models would raise AppRegistryNotReady before Django is set up.
from chat.routing import websocket_urlpatterns  # noqa: E402
from mysite.origins import OriginCheck  # noqa: E402
from mysite.startup import warn_if_channel_layer_is_in_memory  # noqa: E402

warn_if_channel_layer_is_in_memory()

from django.conf import settings  # noqa: E402

if settings.DEBUG:
    # Static files as `runserver` serves them, for uvicorn on its own (make
    # step13-workers). With DEBUG off, nginx serves them from STATIC_ROOT.
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django_asgi_app = ASGIStaticFilesHandler(django_asgi_app)

# ProtocolTypeRouter looks at the type of each connection ("http", "websocket")
# and hands it to the application for that protocol.
application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # WebSocket handshakes are checked against CSRF_TRUSTED_ORIGINS or
        # ALLOWED_HOSTS (no cross-site sockets), then get the logged-in user in
        # scope["user"] from the session cookie, then are routed by path to a consumer.
        "websocket": OriginCheck(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
