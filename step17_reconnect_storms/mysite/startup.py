"""Said once, when a server loads the application."""

import sys

from django.conf import settings

IN_MEMORY_WARNING = """\
================================================================================
WARNING: the channel layer is IN MEMORY (REDIS_URL is not set).
  - Only one server process works: with several workers (make stepN-workers,
    uvicorn --workers N), people on different workers do not see each other.
  - `python manage.py notify` cannot reach anyone (it is another process).
  Chatting in one process, history and logins still work. For everything:
  install redis-server (make stepN then starts it), or set REDIS_URL.
================================================================================
"""


def warn_if_channel_layer_is_in_memory():
    backend = settings.CHANNEL_LAYERS["default"]["BACKEND"]
    if backend == "channels.layers.InMemoryChannelLayer":
        sys.stderr.write(IN_MEMORY_WARNING)
