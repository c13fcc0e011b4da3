from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    # as_asgi() builds a new consumer instance for each connection, like as_view()
    # for class-based views.
    # Differs from the official tutorial: the room name may be any text (the
    # tutorial has \w+, which lets "café" through but makes "has space" a
    # routing error). The consumer refuses the names a channel layer cannot use.
    re_path(r"ws/chat/(?P<room_name>.+)/$", consumers.ChatConsumer.as_asgi()),
    # Any other path is refused at the handshake, as a page would get a 404:
    # without this, URLRouter raises "No route found" and the server logs it.
    re_path(r"", consumers.NoSuchPath.as_asgi()),
]
