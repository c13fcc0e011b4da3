"""The chat's limits: messages per user (CHAT_MAX_MESSAGES_PER_SECOND), sign-ups per
address (CHAT_MAX_SIGNUPS_PER_HOUR) and invalid frames per socket. Messages are
counted per user, not per socket: a second tab, or a socket on another worker, shares
the same allowance. With Redis the counts live there, where every worker sees them;
without Redis (one process) they live in this process."""

import asyncio
import logging
import time
import uuid
import weakref
from collections import defaultdict, deque

import redis.asyncio as redis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# A sliding window, in one atomic step on the Redis server: forget the sends older
# than the window, count the rest, and record this one only if it is allowed. The
# clock is Redis' own (TIME), the same for every worker.
SLIDING_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms - window_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
    return 0
end
redis.call('ZADD', KEYS[1], now_ms, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window_ms)
return 1
"""
CLIENTS = weakref.WeakKeyDictionary()  # a Redis client per event loop
RECENT_SENDS = defaultdict(deque)  # without Redis: key -> when each was counted


def redis_client():
    loop = asyncio.get_running_loop()
    if loop not in CLIENTS:
        # After a Redis restart, retry for about 15 s, as the channel layer does.
        CLIENTS[loop] = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=5,
            socket_connect_timeout=5,
            retry=Retry(ExponentialBackoff(cap=2, base=0.1), 12),
        )
    return CLIENTS[loop]


async def allow_message(user) -> bool:
    """True, and counted, if the user may send a message now."""
    return await allow(
        f"chat:rate:{user.pk}",
        settings.CHAT_MAX_MESSAGES_PER_SECOND,
        settings.CHAT_RATE_WINDOW_SECONDS,
    )


async def allow(key: str, limit: int, window: float) -> bool:
    """True, and counted, if fewer than `limit` were counted under `key` in the last
    `window` seconds."""
    if settings.REDIS_URL:
        try:
            allowed = await redis_client().eval(
                SLIDING_WINDOW, 1, key, int(window * 1000), limit, uuid.uuid4().hex
            )
        except RedisError as error:
            # Redis is down for longer than the retries: the chat goes on (it stores
            # the message) without a limit for now, rather than refusing everyone.
            logger.warning("Rate limit not checked, Redis unreachable: %s", error)
            return True
        return allowed == 1
    sends = RECENT_SENDS[key]
    now = time.monotonic()
    while sends and now - sends[0] >= window:
        sends.popleft()
    if len(sends) >= limit:
        return False
    sends.append(now)
    return True


class InvalidFrames:
    """One socket's invalid frames: more than CHAT_MAX_INVALID_FRAMES within
    CHAT_INVALID_FRAME_WINDOW_SECONDS is abuse. Counted before any I/O."""

    def __init__(self):
        self.count, self.since = 0, time.monotonic()

    def too_many(self) -> bool:
        now = time.monotonic()
        if now - self.since > settings.CHAT_INVALID_FRAME_WINDOW_SECONDS:
            self.count, self.since = 0, now
        self.count += 1
        return self.count > settings.CHAT_MAX_INVALID_FRAMES
