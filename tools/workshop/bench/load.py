"""The load client: N sockets in one room, some of them sending, measured at the others.

Each message carries its sender, its number and a monotonic send time, so every
receiving client can tell its latency. Server and client run on the same machine,
so their monotonic clocks agree.

Two protocols: "tutorial" ({"message": ...} both ways: the tutorial's consumers and
the baseline) and "chat" (the last step's JSON frames, each message numbered by the
server, with a "history" frame on joining).
"""

import asyncio
import contextlib
import gc
import json
import math
import secrets
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

TUTORIAL, CHAT = "tutorial", "chat"  # the protocols
# Handshakes in flight at once while a room fills: a thousand at once would
# measure the server's accept queue, not the chat.
OPEN_BATCH = 50


@dataclass
class RoomResult:
    clients: int
    senders: int
    messages: int  # messages sent in all
    expected: int  # deliveries to clients other than the sender
    received: int
    seconds: float  # from the first send to the last receipt
    duplicates: int = 0  # messages a client received more than once (not counted above)
    errors: list[str] = field(default_factory=list)  # "error" frames the server sent
    latencies: list[float] = field(repr=False, default_factory=list)

    @property
    def ratio(self) -> float:
        return self.received / self.expected if self.expected else 0.0

    @property
    def deliveries_per_second(self) -> float:
        return self.received / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, fraction: float) -> float | None:
        """The fraction's percentile over every delivery that should have happened.

        A delivery that never arrived counts as slower than all that did: None when
        the percentile falls among those (the server had not delivered it by the end).
        """
        if not self.expected:
            return None
        index = min(self.expected, max(1, math.ceil(fraction * self.expected))) - 1
        if index >= len(self.latencies):
            return None
        return sorted(self.latencies)[index] * 1000


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


def payload(run: str, sender: int, number: int) -> str:
    return json.dumps({"r": run, "s": sender, "k": number, "t": time.monotonic()})


def frame_to_send(protocol: str, text: str, client_id: str = "") -> str:
    if protocol == CHAT:
        # With a client id, as the room page sends every message: the server
        # acknowledges it, and never stores it twice.
        return json.dumps({"type": "message", "text": text, "client_id": client_id})
    return json.dumps({"message": text})


def is_presence(raw: str) -> bool:
    """A presence frame (the list of everyone in the room) or change ("presence_diff"),
    which no client here needs. Not parsed: in a room of a thousand users a list is
    tens of KiB, and parsing them all would make the load client, not the server,
    the bottleneck."""
    return '"presence' in raw[:32]


def messages_in(protocol: str, frame: dict) -> list[tuple[str, int | None]]:
    """(text, server's number) of each chat message in a frame; the tutorial
    protocol has no numbers."""
    if protocol == TUTORIAL:
        return [(frame["message"], None)]
    if frame.get("type") == "message":
        return [(frame["text"], frame["id"])]
    if frame.get("type") == "history":  # on joining, and the catch-up on reconnecting
        return [(message["text"], message["id"]) for message in frame["messages"]]
    return []  # presence and the like


class Client:
    def __init__(self, index: int, protocol: str, run: str, cookie: str = ""):
        self.index = index
        self.protocol = protocol
        # Messages of this run only: a room's history can hold an earlier run's.
        self.run = run
        self.cookie = cookie
        self.socket = None
        self.received = 0
        self.duplicates = 0
        self.skipped = 0  # messages a history frame said it left out
        self.seen: set[tuple[int, int]] = set()
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.last_frame_at = 0.0

    def reset(self) -> None:
        self.received, self.duplicates, self.skipped, self.latencies = 0, 0, 0, []
        self.seen.clear()

    def frame(self, number: int) -> str:
        return frame_to_send(
            self.protocol,
            payload(self.run, self.index, number),
            f"{self.run}-{self.index}-{number}",
        )

    def take(self, raw: str, now: float) -> None:
        self.last_frame_at = now
        if is_presence(raw):
            return
        frame = json.loads(raw)
        if self.protocol == CHAT and frame.get("type") == "error":
            self.errors.append(frame.get("code", "?"))
        if self.protocol == CHAT and frame.get("type") == "history":
            self.skipped += frame.get("skipped", 0)
        for text, _ in messages_in(self.protocol, frame):
            try:
                message = json.loads(text)
            except ValueError:
                continue
            if (
                not isinstance(message, dict)
                or message.get("r") != self.run
                or message.get("s") == self.index
            ):
                continue
            key = (message["s"], message["k"])
            if key in self.seen:
                self.duplicates += 1
                continue
            self.seen.add(key)
            self.received += 1
            self.latencies.append(now - message["t"])

    async def read(self):
        async for raw in self.socket:
            self.take(raw, time.monotonic())


async def open_socket(
    url: str, origin: str, cookie: str, timeout: float = 60, **options
):
    """A client socket; `options` replace the defaults (websockets' connect())."""
    return await connect(
        url,
        **{
            "origin": origin,
            "additional_headers": {"Cookie": cookie} if cookie else None,
            "compression": None,
            "max_queue": None,
            "max_size": None,
            "open_timeout": timeout,
            "ping_interval": None,
            **options,
        },
    )


async def open_clients(
    url: str, count: int, protocol: str, origin: str, cookies: list[str]
) -> list[Client]:
    """`count` clients in the room; client i logs in with cookies[i] (if any)."""
    run = secrets.token_hex(4)
    clients = [
        Client(i, protocol, run, cookies[i] if cookies else "") for i in range(count)
    ]

    async def open_one(client):
        client.socket = await open_socket(url, origin, client.cookie)

    for start in range(0, count, OPEN_BATCH):
        await asyncio.gather(
            *(open_one(c) for c in clients[start : start + OPEN_BATCH])
        )
    return clients


async def settle(clients, idle=None, quiet: float = 0.5, limit: float = 30.0):
    """Wait until no client has received anything for `quiet` seconds and idle()
    (if given) says the server has nothing left to do: joining a room sets off
    work (presence broadcasts, database writes) that is not what is measured."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        latest = max((c.last_frame_at for c in clients), default=0.0)
        if time.monotonic() - latest >= quiet and (idle is None or idle()):
            return
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def collector_paused():
    """No garbage collection in the load client while it measures: a full collection
    among a thousand sockets' objects stalls it for long enough to show up as the
    server's latency."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def wait_for_deliveries(clients, expected, deadline, quiet_after):
    """Until every delivery arrived, the deadline passed, or nothing arrived for
    `quiet_after` seconds (the rest was dropped)."""
    last_total, last_change = -1, time.monotonic()
    while time.monotonic() < deadline:
        total = sum(c.received for c in clients)
        if total >= expected:
            return
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > quiet_after:
            return
        await asyncio.sleep(0.05)


async def in_room(url, count, protocol, origin, cookies, measure, idle=None):
    """Open the room, let it settle, run `measure(clients)`, close everything."""
    clients = await open_clients(url, count, protocol, origin, cookies)
    readers = [asyncio.create_task(c.read()) for c in clients]
    try:
        await settle(clients, idle)
        for client in clients:
            client.reset()
        with collector_paused():
            return await measure(clients)
    finally:
        for reader in readers:
            reader.cancel()
        drop([c.socket for c in clients])


def drop(sockets) -> None:
    """Cut the connections without a closing handshake: the server is killed next,
    and a thousand handshakes with a busy server would only make the run longer."""
    for socket in sockets:
        if socket is not None:
            socket.transport.abort()


def result_of(clients, senders, messages, started) -> RoomResult:
    finished = max((c.last_frame_at for c in clients), default=started)
    return RoomResult(
        clients=len(clients),
        senders=senders,
        messages=messages,
        expected=messages * (len(clients) - 1),
        received=sum(c.received for c in clients),
        seconds=max(finished - started, 1e-6),
        duplicates=sum(c.duplicates for c in clients),
        errors=[error for c in clients for error in c.errors],
        latencies=[latency for c in clients for latency in c.latencies],
    )


async def run_room(
    url: str,
    clients_count: int,
    senders: int,
    per_sender: int,
    protocol: str,
    origin: str,
    cookies: list[str],
    on_ready=None,
    on_done=None,
    idle=None,
    timeout: float = 90.0,
    quiet_after: float = 3.0,
) -> RoomResult:
    """Peak throughput: W clients send `per_sender` messages each as fast as they can.

    on_ready() is called once everyone is connected and the room is quiet, before
    the first message: the place to read the server's CPU time and memory.
    on_done() is called when the last delivery has arrived (or no more will),
    before any socket closes: leaving is not part of what is measured.
    """

    async def measure(clients):
        if on_ready:
            on_ready()

        async def send_all(client):
            for number in range(per_sender):
                await client.socket.send(client.frame(number))

        started = time.monotonic()
        await asyncio.gather(*(send_all(c) for c in clients[:senders]))
        expected = senders * per_sender * (clients_count - 1)
        await wait_for_deliveries(clients, expected, started + timeout, quiet_after)
        if on_done:
            on_done()
        return result_of(clients, senders, senders * per_sender, started)

    return await in_room(url, clients_count, protocol, origin, cookies, measure, idle)


async def run_steady(
    url: str,
    clients_count: int,
    senders: int,
    rate: float,
    seconds: float,
    protocol: str,
    origin: str,
    cookies: list[str],
    drain: float,
    on_ready=None,
    on_done=None,
    idle=None,
    quiet_after: float = 3.0,
) -> RoomResult:
    """A fixed offered load: `rate` messages a second in all, for `seconds`, from
    `senders` clients taking turns (evenly spaced, whatever the server does), then
    at most `drain` seconds for the deliveries still on their way (less if none
    arrives for `quiet_after` seconds)."""

    async def measure(clients):
        if on_ready:
            on_ready()
        per_sender = max(1, round(rate * seconds / senders))
        started = time.monotonic()

        async def send_steadily(client, turn):
            for number in range(per_sender):
                # On a fixed timetable, so a slow server cannot slow the offered load.
                due = started + (turn + number * senders) / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await client.socket.send(client.frame(number))

        await asyncio.gather(
            *(send_steadily(c, turn) for turn, c in enumerate(clients[:senders]))
        )
        expected = senders * per_sender * (clients_count - 1)
        await wait_for_deliveries(
            clients, expected, time.monotonic() + drain, quiet_after
        )
        if on_done:
            on_done()
        return result_of(clients, senders, senders * per_sender, started)

    return await in_room(url, clients_count, protocol, origin, cookies, measure, idle)
