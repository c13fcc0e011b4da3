"""The channel layers as this step's settings build them, and who is in a group."""

import importlib.util
import os
import runpy
from unittest import mock

# Keys the tests write to Redis start with this, so that flushing after a test
# cannot touch the keys of a development server sharing the same Redis.
TEST_PREFIX = "test"


def settings_value(name: str, environment: dict) -> object:
    """A setting as mysite/settings.py builds it with this environment (or Django's
    default, if the settings leave it alone).

    The settings module is run again in a scratch namespace, so that the tests use
    the configuration you get, not a copy of it.
    """
    settings_module = os.environ["DJANGO_SETTINGS_MODULE"]
    chosen = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "REDIS_LAYER", "DATABASE_URL")
    }
    chosen.update(environment)
    with mock.patch.dict(os.environ, chosen, clear=True):
        settings_file = importlib.util.find_spec(settings_module).origin
        namespace = runpy.run_path(settings_file, run_name="settings_copy")
    if name in namespace:
        return namespace[name]
    from django.conf import global_settings

    return getattr(global_settings, name)  # not set: Django's default


def channel_layers_from_settings(
    redis_url: str | None, environment: dict | None = None
) -> dict:
    """CHANNEL_LAYERS as mysite/settings.py builds it, with or without REDIS_URL
    (and with `environment` set for it, such as REDIS_LAYER)."""
    chosen = dict(environment or {})
    if redis_url:
        chosen["REDIS_URL"] = redis_url
    return settings_value("CHANNEL_LAYERS", chosen)


async def group_members(layer, group: str) -> set[str]:
    """The channel names in `group`, read from the layer's own storage."""
    if hasattr(layer, "_get_layer"):  # channels_redis.pubsub: groups live per process
        loop_layer = layer._get_layer()
        return set(loop_layer.groups.get(loop_layer._get_group_channel_name(group), ()))
    if hasattr(layer, "groups"):  # channels.layers.InMemoryChannelLayer
        return set(layer.groups.get(group, {}))
    # channels_redis.core: a group is a sorted set of channel names in Redis.
    connection = layer.connection(layer.consistent_hash(group))
    members = await connection.zrange(layer._group_key(group), 0, -1)
    return {member.decode() for member in members}
