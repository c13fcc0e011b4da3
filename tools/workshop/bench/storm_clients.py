"""The reconnect storm's clients: a room of logged-in clients loses its app server
(storm.py measures it).

The listeners are on app server A, a few senders on app server B (same Redis, same
database), so messages keep arriving while A is down. A is killed and started again
on the same port; every listener reconnects as the room page does: with ?after=<the
last message it has>, after a backoff with jitter read from the page itself.

A listener is *current* when it holds, with no gap, every message sent more than
LAG seconds ago. The storm is over once every listener has reconnected and all of them
stay current for HOLD seconds on end.
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
# Full jitter: Math.random() * Math.min(1000 * 2 ** retries, 15000).
PAGE_BACKOFF = re.compile(
    r"Math\.random\(\) \* Math\.min\((?P<first>\d+) \* 2 \*\* retries, (?P<cap>\d+)\)"
)
# The close code the chat sends a socket without a logged-in user.
CLOSE_LOGIN_REQUIRED = 4401
LAG = 1.0  # a message this old must have reached every listener that is current
HOLD = 2.0  # ... and they must stay current this long for the storm to be over
CHECK = 0.1  # seconds between two looks


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
            "jitter": [self.low, round(self.low + self.spread, 6)],
        }


def page_backoff(room_page: Path) -> Backoff:
    found = PAGE_BACKOFF.search(room_page.read_text(encoding="utf-8"))
    if not found:
        raise RuntimeError(
            f"{room_page}: the reconnection delay (Math.random() * Math.min(... * 2 **"
            " retries, ...)) was not found; the storm reconnects as the page does, so"
            " it needs it"
        )
    return Backoff(
        first=int(found["first"]) / 1000,
        cap=int(found["cap"]) / 1000,
        low=0.0,
        spread=1.0,
    )


@dataclass
class Storm:
    """What every client shares: the run's tag, when the server went down, and when
    each message was sent (read from its text)."""

    run: str = field(default_factory=lambda: secrets.token_hex(4))
    killed_at: float | None = None
    sent_at: dict[int, float] = field(default_factory=dict)

    def note(self, text: str, number: int) -> None:
        message = json.loads(text)
        if message.get("r") == self.run:
            self.sent_at.setdefault(number, message["t"])

    def due(self, now: float) -> int:
        """The newest message sent LAG seconds ago or earlier."""
        return max((n for n, t in self.sent_at.items() if t <= now - LAG), default=0)


class Listener:
    def __init__(self, storm: Storm, url: str, origin: str, cookie: str, backoff):
        self.storm, self.url, self.origin, self.cookie = storm, url, origin, cookie
        self.backoff = backoff
        self.socket = None
        self.last_id: int | None = None
        self.arrivals: set[int] = set()  # the numbers of the messages it has
        self.contiguous = 0  # it has every message 1..contiguous
        self.opened: list[float] = []
        self.failed_attempts = 0
        self.current_at: float | None = None  # first current after reconnecting
        self.refused = False  # closed for want of a login: a setup error

    def reopened_at(self) -> float | None:
        killed = self.storm.killed_at
        if killed is None:
            return None
        return next((t for t in self.opened if t > killed), None)

    def take(self, raw: str) -> None:
        if is_presence(raw):
            return
        for text, number in messages_in(CHAT, json.loads(raw)):
            if number in self.arrivals:
                continue  # the page skips a message it has shown already
            self.arrivals.add(number)
            self.storm.note(text, number)
            self.last_id = max(self.last_id or 0, number)
        while self.contiguous + 1 in self.arrivals:
            self.contiguous += 1

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
                        self.take(raw)
                except WebSocketException:
                    pass  # the server went away: reconnect below
                if self.socket.close_code == CLOSE_LOGIN_REQUIRED:
                    self.refused = True
                    return
            await asyncio.sleep(self.backoff.delay(retries))
            retries += 1


class Sender:
    """A socket on the other app server that sends; its own messages come back to it
    numbered, at once (that server is not the one in trouble)."""

    def __init__(self, storm: Storm, socket):
        self.storm, self.socket = storm, socket
        self.newest = 0

    async def read(self) -> None:
        try:
            async for raw in self.socket:
                if not is_presence(raw):
                    for text, number in messages_in(CHAT, json.loads(raw)):
                        self.storm.note(text, number)
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
            frame_to_send(
                CHAT,
                payload(run, sender, number // len(senders)),
                f"{run}-{sender}-{number}",
            )
        )
        number += 1


async def wait_until(predicate, limit: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def watch(storm: Storm, listeners: list[Listener], limit: float, cpu) -> dict:
    """Look every CHECK seconds until everyone has stayed current for HOLD seconds,
    or `limit` seconds after the kill. Returns when it was over, and the server's CPU
    time then (cpu() is read at every look, and cpu_at says when)."""
    since, cpu_since = None, None
    while time.monotonic() - storm.killed_at < limit:
        await asyncio.sleep(CHECK)
        now, cpu_now = time.monotonic(), cpu()
        due = storm.due(now)
        current = True
        for listener in listeners:
            if listener.reopened_at() is None or listener.contiguous < due:
                current = False
            elif listener.current_at is None:
                listener.current_at = now
        if not current:
            since = None
        elif since is None:
            since, cpu_since = now, cpu_now
        elif now - since >= HOLD:
            return {"over_at": since, "cpu_at": since, "cpu_then": cpu_since}
    return {"over_at": None, "cpu_at": time.monotonic(), "cpu_then": cpu()}


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
    cpu,
    idle,
) -> tuple[dict, list[Listener]]:
    """Fill the room, send steadily, call restart() (in a thread: it kills the
    listeners' server and starts it again, returning when it listens), and watch
    until the storm is over or `limit` seconds have passed since the kill.

    Returns the figures (seconds counted from the kill) and the listeners, whose
    messages the caller compares with what the database stored.
    """
    storm = Storm()
    listeners = [
        Listener(storm, listener_url, origin, cookie, backoff)
        for cookie in listener_cookies
    ]
    tasks: list[asyncio.Task] = []
    senders: list[Sender] = []
    stop_sending = asyncio.Event()
    began = time.monotonic()
    try:
        for start in range(0, len(listeners), OPEN_BATCH):
            batch = listeners[start : start + OPEN_BATCH]
            tasks.extend(asyncio.create_task(each.run()) for each in batch)
            if not await wait_until(lambda b=batch: all(x.opened for x in b), 60):
                raise RuntimeError("the listeners could not all connect")
        filled = time.monotonic()
        await wait_until(idle, 30, step=0.1)
        settled = time.monotonic()
        for cookie in sender_cookies:
            senders.append(Sender(storm, await open_socket(sender_url, origin, cookie)))
        tasks.extend(asyncio.create_task(sender.read()) for sender in senders)
        tasks.append(
            asyncio.create_task(send_steadily(senders, storm.run, rate, stop_sending))
        )
        with collector_paused():
            await asyncio.sleep(warmup)
            if not all(each.last_id for each in listeners):
                raise RuntimeError("not every listener had a message before the kill")
            storm.killed_at, client_cpu = time.monotonic(), time.process_time()
            up = await asyncio.to_thread(restart)
            over = await watch(storm, listeners, limit, cpu)
            client_cpu_share = (time.process_time() - client_cpu) / (
                time.monotonic() - storm.killed_at
            )
            stop_sending.set()
            # The last messages' echoes, then every listener should have them all:
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
    current = [each.current_at - killed for each in listeners if each.current_at]
    return (
        {
            "listeners": len(listeners),
            "senders": len(senders),
            "lag_s": LAG,
            "hold_s": HOLD,
            "server_up_s": up["at"] - killed,
            "reconnected": sum(t is not None for t in reopened),
            "all_reconnected_s": max(t - killed for t in reopened)
            if all(reopened)
            else None,
            "median_caught_up_s": statistics.median(current) if current else None,
            "all_caught_up_s": over["over_at"] - killed if over["over_at"] else None,
            "failed_attempts": sum(each.failed_attempts for each in listeners),
            "client_cpu_share": client_cpu_share,
            "server_startup_cpu_s": up["cpu"],
            # The restarted server's CPU from listening until the storm was over.
            "storm_cpu_s": over["cpu_then"] - up["cpu"],
            "storm_cpu_share": (over["cpu_then"] - up["cpu"])
            / (over["cpu_at"] - up["at"]),
            # Before the storm: how long the room took to fill, then to fall quiet.
            "fill_s": filled - began,
            "settle_s": settled - filled,
        },
        listeners,
    )
