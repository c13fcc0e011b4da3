"""Who is online, and each user's open sockets: in Redis, where every process sees
them (without Redis, in this process's memory), not in the database. A join is one
Redis script that counts the user's sockets and records this one in one step: two
sockets opening at once cannot both pass the cap. A socket not refreshed expires."""

import asyncio
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings

from .limits import redis_client

# Redis' own clock (TIME), the same for every process, in milliseconds; and a
# socket's entry, kept `ms` from now in a sorted set that lives as long as its last.
NOW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local function keep(key, entry, ms)
    redis.call('ZADD', key, now + ms, entry)
    if redis.call('PTTL', key) < ms then
        redis.call('PEXPIRE', key, ms)
    end
end
"""
# KEYS: the user's and the room's sockets, its version. ARGV: the entry in each (the
# channel name; "channel username", with no space in it), how long it lives, the cap.
ENTER = (
    NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    return 0
end
keep(KEYS[1], ARGV[1], tonumber(ARGV[3]))
keep(KEYS[2], ARGV[2], tonumber(ARGV[3]))
redis.call('SET', KEYS[3], now, 'NX', 'PX', 86400000)  -- the room's first version
return 1
"""
)
# KEYS: a user's and a room's sockets, for each socket. ARGV: how long they live,
# then each key's entry.
REFRESH = (
    NOW
    + """
for i = 1, #KEYS do
    keep(KEYS[i], ARGV[i + 1], tonumber(ARGV[1]))
end
"""
)
# KEYS: the room's sockets, the names it was last told of, its version (kept a day from
# each call). If the users online (sorted, one per line) differ: records them and the
# next version (at first the clock's, to go up even if Redis lost them); returns all 3.
CHANGES = (
    NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local seen, online = {}, {}
for _, entry in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    seen[string.sub(entry, string.find(entry, ' ', 1, true) + 1)] = true
end
for name in pairs(seen) do
    online[#online + 1] = name
end
table.sort(online)
local told, now_online = redis.call('GET', KEYS[2]) or '', table.concat(online, '\\n')
for i = 2, 3 do redis.call('PEXPIRE', KEYS[i], 86400000) end
if told == now_online then
    return false
end
local version = tonumber(redis.call('GET', KEYS[3]) or now) + 1
redis.call('SET', KEYS[2], now_online, 'PX', 86400000)
redis.call('SET', KEYS[3], version, 'PX', 86400000)
return {version, told, now_online}
"""
)


@dataclass(frozen=True)
class PresenceChange:
    room: str
    version: int
    joined: list[str]
    left: list[str]

    @classmethod
    def between(cls, room, version, before, after):
        before, after = set(before), set(after)
        return cls(room, version, sorted(after - before), sorted(before - after))


def key(*parts) -> str:
    return settings.CHAT_REDIS_PREFIX + ":".join(str(part) for part in parts)


def names(text) -> list[str]:
    return text.decode().split("\n") if text else []


class RedisOnline:
    def __init__(self):
        self.redis = redis_client()
        self.lifetime = int(settings.PRESENCE_TIMEOUT_SECONDS * 1000)

    def keys_and_entries(self, room_name, user, channel_name):
        keys = [key("sockets", user.pk), key("online", room_name)]
        return keys, [channel_name, f"{channel_name} {user.get_username()}"]

    async def enter(self, room_name, user, channel_name) -> bool:
        """Counted online, unless the user has CHAT_MAX_SOCKETS_PER_USER sockets."""
        keys, entries = self.keys_and_entries(room_name, user, channel_name)
        cap = settings.CHAT_MAX_SOCKETS_PER_USER
        keys.append(key("version", room_name))
        return await self.redis.eval(ENTER, 3, *keys, *entries, self.lifetime, cap) == 1

    async def leave(self, room_name, user, channel_name) -> None:
        keys, entries = self.keys_and_entries(room_name, user, channel_name)
        for each, entry in zip(keys, entries, strict=True):
            await self.redis.zrem(each, entry)

    async def refresh(self, sockets) -> None:
        """Still online: the heartbeat's, for (room, user, channel name) each."""
        keys, entries = [], []
        for socket in sockets:
            more_keys, more_entries = self.keys_and_entries(*socket)
            keys.extend(more_keys)
            entries.extend(more_entries)
        await self.redis.eval(REFRESH, len(keys), *keys, self.lifetime, *entries)

    async def told(self, room_name) -> tuple[int, list[str]]:
        """Who the room was last told is online, and that list's version."""
        found = await self.redis.mget(key("version", room_name), key("told", room_name))
        return int(found[0] or 0), names(found[1])

    async def changes(self, room_names) -> list[PresenceChange]:
        """Each of these rooms' change since it was last told, recorded as told:
        each change is returned once, however many processes ask at once."""
        changes = []
        for room in sorted(room_names):
            keys = [key("online", room), key("told", room), key("version", room)]
            found = await self.redis.eval(CHANGES, 3, *keys)
            if found:
                version, before, after = found
                changes.append(
                    PresenceChange.between(room, version, names(before), names(after))
                )
        return changes


class LocalOnline:
    """The same in this process's memory; nothing here suspends: each step is atomic."""

    def __init__(self):
        self.sockets = defaultdict(dict)  # user pk -> {channel name: expires}
        self.online = defaultdict(dict)  # room -> {channel name: (username, expires)}
        self.last_told = defaultdict(lambda: (0, []))  # room -> (version, names)

    async def enter(self, room_name, user, channel_name) -> bool:
        now, mine = time.monotonic(), self.sockets[user.pk]
        for channel in [c for c, expires in mine.items() if expires <= now]:
            del mine[channel]  # gone without a word, as the Redis script drops them
        if len(mine) >= settings.CHAT_MAX_SOCKETS_PER_USER:
            return False
        await self.refresh([(room_name, user, channel_name)])
        return True

    async def leave(self, room_name, user, channel_name) -> None:
        for sockets, each in ((self.sockets, user.pk), (self.online, room_name)):
            sockets[each].pop(channel_name, None)
            if not sockets[each]:
                del sockets[each]  # every user and room ever seen would stay

    async def refresh(self, sockets) -> None:
        expires = time.monotonic() + settings.PRESENCE_TIMEOUT_SECONDS
        for room_name, user, channel_name in sockets:
            self.sockets[user.pk][channel_name] = expires
            self.online[room_name][channel_name] = (user.get_username(), expires)

    async def told(self, room_name) -> tuple[int, list[str]]:
        return self.last_told[room_name]

    async def changes(self, room_names) -> list[PresenceChange]:
        now, changes = time.monotonic(), []
        for room in sorted(room_names):
            sockets = self.online.get(room, {})
            for channel in [c for c, (_, expires) in sockets.items() if expires <= now]:
                del sockets[channel]
            version, before = self.last_told[room]
            after = {name for name, _ in sockets.values()}
            if set(before) != after:
                self.last_told[room] = (version + 1, sorted(after))
                changes.append(PresenceChange.between(room, version + 1, before, after))
            if not after:  # its version stays, so that it only ever goes up
                self.online.pop(room, None)
        return changes


LOCAL = weakref.WeakKeyDictionary()  # without Redis: one per event loop


def backend():
    """Where presence is kept: Redis if there is one, else this process's memory."""
    if settings.REDIS_URL:
        return RedisOnline()
    loop = asyncio.get_running_loop()
    if loop not in LOCAL:
        LOCAL[loop] = LocalOnline()
    return LOCAL[loop]
