"""The reconnect storm: a room of logged-in clients loses its app server.

The listeners are on app server A, a few senders on app server B (same Redis, same
database), so messages keep arriving while A is down. A is killed and started again
on the same port; every listener reconnects as the room page does: with ?after=<the
last message it has>, after a backoff with jitter read from the page itself. A
listener has caught up when it holds, with no gap, every message up to one sent after
its new socket opened.
"""

import asyncio
import json
import random
import re
import secrets
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from websockets.exceptions import WebSocketException

from workshop.bench.load import (
    CHAT,
    OPEN_BATCH,
    collector_paused,
    drop,
    frame_to_send,
    is_presence,
    messages_in,
    open_socket,
    payload,
)

# The page's reconnection delay, as written in its JavaScript (room.html).
PAGE_BACKOFF = re.compile(
    r"Math\.min\((?P<first>\d+) \* 2 \*\* retries, (?P<cap>\d+)\)"
    r" \* \((?P<low>[\d.]+) \+ (?P<spread>[\d.]+) \* Math\.random\(\)\)"
)
# The close code the chat sends a socket without a logged-in user.
CLOSE_LOGIN_REQUIRED = 4401


@dataclass(frozen=True)
class Backoff:
    first: float  # seconds before the first retry (before jitter)
    cap: float  # the longest wait
    low: float  # the jitter: each wait is multiplied by low .. low + spread
    spread: float

    def delay(self, retries: int) -> float:
        return min(self.first * 2**retries, self.cap) * (
            self.low + self.spread * random.random()
        )

    def describe(self) -> dict:
        return {
            "first_s": self.first,
            "cap_s": self.cap,
            "jitter": [self.low, self.low + self.spread],
        }


def page_backoff(room_page: Path) -> Backoff:
    found = PAGE_BACKOFF.search(room_page.read_text(encoding="utf-8"))
    if not found:
        raise RuntimeError(
            f"{room_page}: the reconnection delay (Math.min(... * 2 ** retries, ...)"
            " * (... + ... * Math.random())) was not found; the storm reconnects as"
            " the page does, so it needs it"
        )
    return Backoff(
        first=int(found["first"]) / 1000,
        cap=int(found["cap"]) / 1000,
        low=float(found["low"]),
        spread=float(found["spread"]),
    )


@dataclass
class Storm:
    """What every listener shares: when the server went down, when each message was
    sent (from its text), and the run's tag."""

    run: str = field(default_factory=lambda: secrets.token_hex(4))
    killed_at: float | None = None
    sent_at: dict[int, float] = field(default_factory=dict)


class Listener:
    def __init__(self, storm: Storm, url: str, origin: str, cookie: str, backoff):
        self.storm, self.url, self.origin, self.cookie = storm, url, origin, cookie
        self.backoff = backoff
        self.socket = None
        self.last_id: int | None = None
        self.arrivals: dict[int, float] = {}  # message number -> first arrival
        self.contiguous = 0  # every message 1..contiguous has arrived
        self.opened: list[float] = []
        self.failed_attempts = 0
        self.caught_up_at: float | None = None
        self.refused = False  # closed for want of a login: a setup error

    def reopened_at(self) -> float | None:
        killed = self.storm.killed_at
        if killed is None:
            return None
        return next((t for t in self.opened if t > killed), None)

    def take(self, raw: str, now: float) -> None:
        if is_presence(raw):
            return
        for text, number in messages_in(CHAT, json.loads(raw)):
            if number in self.arrivals:
                continue  # the page skips a message it has shown already
            self.arrivals[number] = now
            message = json.loads(text)
            if message.get("r") == self.storm.run:
                self.storm.sent_at.setdefault(number, message["t"])
            self.last_id = max(self.last_id or 0, number)
        while self.contiguous + 1 in self.arrivals:
            self.contiguous += 1
        reopened = self.reopened_at()
        if (
            self.caught_up_at is None
            and reopened is not None
            and self.storm.sent_at.get(self.contiguous, 0.0) >= reopened
        ):
            self.caught_up_at = now

    async def run(self) -> None:
        """Connect, read, and on any drop reconnect with ?after= after the backoff."""
        retries = 0
        while True:
            after = "" if self.last_id is None else f"?after={self.last_id}"
            try:
                self.socket = await open_socket(
                    self.url + after, self.origin, self.cookie, timeout=10
                )
            except (OSError, WebSocketException, TimeoutError):
                self.failed_attempts += 1
            else:
                retries = 0
                self.opened.append(time.monotonic())
                try:
                    async for raw in self.socket:
                        self.take(raw, time.monotonic())
                except WebSocketException:
                    pass  # the server went away: reconnect below
                if self.socket.close_code == CLOSE_LOGIN_REQUIRED:
                    self.refused = True
                    return
            await asyncio.sleep(self.backoff.delay(retries))
            retries += 1


class Sender:
    """A socket on the other app server that sends; its own messages come back to it,
    numbered, so it knows the newest number stored."""

    def __init__(self, socket):
        self.socket = socket
        self.newest = 0

    async def read(self) -> None:
        try:
            async for raw in self.socket:
                if not is_presence(raw):
                    for _, number in messages_in(CHAT, json.loads(raw)):
                        self.newest = max(self.newest, number)
        except WebSocketException:
            pass


async def send_steadily(senders, run: str, rate: float, stop: asyncio.Event):
    """`rate` messages a second in all, the senders taking turns, until stopped."""
    started, number = time.monotonic(), 0
    while not stop.is_set():
        due = started + number / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        sender = number % len(senders)
        await senders[sender].socket.send(
            frame_to_send(CHAT, payload(run, sender, number // len(senders)))
        )
        number += 1


async def wait_until(predicate, limit: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def run_storm(
    listener_url: str,
    sender_url: str,
    origin: str,
    listener_cookies: list[str],
    sender_cookies: list[str],
    rate: float,
    warmup: float,
    limit: float,
    backoff: Backoff,
    restart,
    on_caught_up,
    idle,
) -> tuple[dict, list[Listener]]:
    """Fill the room, send steadily, call restart() (in a thread: it kills the
    listeners' server and starts it again, returning when it listens), and wait until
    every listener has caught up or `limit` seconds have passed since the kill.

    Returns the figures (seconds counted from the kill) and the listeners, whose
    arrivals the caller compares with what the database stored.
    """
    storm = Storm()
    listeners = [
        Listener(storm, listener_url, origin, cookie, backoff)
        for cookie in listener_cookies
    ]
    tasks: list[asyncio.Task] = []
    senders: list[Sender] = []
    stop_sending = asyncio.Event()
    try:
        for start in range(0, len(listeners), OPEN_BATCH):
            batch = listeners[start : start + OPEN_BATCH]
            tasks.extend(asyncio.create_task(each.run()) for each in batch)
            if not await wait_until(lambda b=batch: all(x.opened for x in b), 60):
                raise RuntimeError("the listeners could not all connect")
        await wait_until(idle, 30, step=0.1)
        for cookie in sender_cookies:
            senders.append(Sender(await open_socket(sender_url, origin, cookie)))
        tasks.extend(asyncio.create_task(sender.read()) for sender in senders)
        tasks.append(
            asyncio.create_task(send_steadily(senders, storm.run, rate, stop_sending))
        )
        with collector_paused():
            await asyncio.sleep(warmup)
            if not all(each.last_id for each in listeners):
                raise RuntimeError("not every listener had a message before the kill")
            storm.killed_at, client_cpu = time.monotonic(), time.process_time()
            up_at = await asyncio.to_thread(restart)
            everyone = await wait_until(
                lambda: all(each.caught_up_at for each in listeners),
                limit - (time.monotonic() - storm.killed_at),
            )
            on_caught_up()
            client_cpu_share = (time.process_time() - client_cpu) / (
                time.monotonic() - storm.killed_at
            )
            stop_sending.set()
            # The last messages' own echoes, then every listener should have them all:
            # one still missing after the wait counts as lost.
            await asyncio.sleep(1)
            newest = max(sender.newest for sender in senders)
            await wait_until(lambda: all(x.contiguous >= newest for x in listeners), 30)
    finally:
        stop_sending.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        drop([s.socket for s in senders] + [x.socket for x in listeners])
    if any(each.refused for each in listeners):
        raise RuntimeError("the server refused a listener's login")

    killed = storm.killed_at
    reopened = [each.reopened_at() for each in listeners]
    caught = [each.caught_up_at for each in listeners]

    def since_kill(times):
        return [t - killed for t in times if t is not None]

    return (
        {
            "listeners": len(listeners),
            "senders": len(senders),
            "server_up_s": up_at - killed,
            "reconnected": sum(t is not None for t in reopened),
            "all_reconnected_s": max(since_kill(reopened)) if all(reopened) else None,
            "caught_up": sum(t is not None for t in caught),
            "all_caught_up_s": max(since_kill(caught)) if everyone else None,
            "median_caught_up_s": statistics.median(since_kill(caught))
            if any(caught)
            else None,
            "failed_attempts": sum(each.failed_attempts for each in listeners),
            "client_cpu_share": client_cpu_share,
        },
        listeners,
    )
