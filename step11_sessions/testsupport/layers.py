"""The channel layers as this step's settings build them, and who is in a group."""

import importlib.util
import os
import runpy
from unittest import mock

# Keys the tests write to Redis start with this, so that flushing after a test
# cannot touch the keys of a development server sharing the same Redis.
TEST_PREFIX = "test"


def channel_layers_from_settings(
    redis_url: str | None, environment: dict | None = None
) -> dict:
    """CHANNEL_LAYERS exactly as mysite/settings.py builds it, with or without
    REDIS_URL (and with `environment` set for it, such as REDIS_LAYER).

    The settings module is run again in a scratch namespace, so that the tests use
    the configuration you get (with its Redis connection options), not a copy.
    """
    settings_module = os.environ["DJANGO_SETTINGS_MODULE"]
    chosen = {
        key: value
        for key, value in os.environ.items()
        if key not in ("REDIS_URL", "REDIS_LAYER")
    }
    chosen.update(environment or {})
    if redis_url:
        chosen["REDIS_URL"] = redis_url
    with mock.patch.dict(os.environ, chosen, clear=True):
        settings_file = importlib.util.find_spec(settings_module).origin
        namespace = runpy.run_path(settings_file, run_name="settings_copy")
    return namespace["CHANNEL_LAYERS"]


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
