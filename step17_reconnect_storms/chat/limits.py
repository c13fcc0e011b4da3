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

# A sliding window, in one atomic step on the Redis server, for each key in turn (a
# key twice is two sends): forget the sends older than the window, count the rest,
# and record this one only if it is allowed. The clock is Redis' own (TIME), the same
# for every worker.
SLIDING_WINDOW = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local window_ms = tonumber(ARGV[1])
local allowed = {}
for i, key in ipairs(KEYS) do
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms - window_ms)
    allowed[i] = 0
    if redis.call('ZCARD', key) < tonumber(ARGV[2]) then
        redis.call('ZADD', key, now_ms, ARGV[3] .. ':' .. i)
        redis.call('PEXPIRE', key, window_ms)
        allowed[i] = 1
    end
end
return allowed
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


async def allow_messages(users) -> list[bool]:
    """For each of these senders (one per message: a user twice sent two), True, and
    counted, if the user may send a message now. One round trip to Redis for all."""
    keys = [f"chat:rate:{user.pk}" for user in users]
    limit = settings.CHAT_MAX_MESSAGES_PER_SECOND
    return await allow_all(keys, limit, settings.CHAT_RATE_WINDOW_SECONDS)


async def allow(key: str, limit: int, window: float) -> bool:
    """True, and counted, if fewer than `limit` were counted under `key` in the last
    `window` seconds."""
    return (await allow_all([key], limit, window))[0]


async def allow_all(keys: list[str], limit: int, window: float) -> list[bool]:
    """allow() for each key in turn, in one step."""
    if settings.REDIS_URL:
        try:
            allowed = await redis_client().eval(
                SLIDING_WINDOW, len(keys), *keys, int(window * 1000), limit,
                uuid.uuid4().hex,
            )  # fmt: skip
        except RedisError as error:
            # Redis is down for longer than the retries: the chat goes on (it stores
            # the message) without a limit for now, rather than refusing everyone.
            logger.warning("Rate limit not checked, Redis unreachable: %s", error)
            return [True] * len(keys)
        return [answer == 1 for answer in allowed]
    return [allow_here(key, limit, window) for key in keys]


def allow_here(key: str, limit: int, window: float) -> bool:
    """allow() in this process's memory, without Redis."""
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
