"""A chat client that behaves like the room page, for tests that use a real server.

It shows each message once, in the order of its number. It keeps what it sends,
with a client id, until the server acknowledges it, and when its socket drops it
reconnects with ?after=<the number of its last message>, so the server sends what
it missed, then sends again what was not acknowledged.
"""

import json
import socket
import time
import uuid

from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


class ChatClient:
    def __init__(self, port: int, room: str, cookie: str, name: str = ""):
        self.port = port
        self.room = room
        self.cookie = cookie
        self.name = name
        self.socket = None
        self.last_id: int | None = None
        self.messages: list[dict] = []  # every message, in the order shown
        self.frames: list[dict] = []  # every frame received
        self.pending: dict[str, str] = {}  # client id -> text, until acknowledged
        self.online: set[str] = set()  # the presence frames applied, as the page does

    def connect(self, timeout: float = 5) -> "ChatClient":
        after = "" if self.last_id is None else f"?after={self.last_id}"
        self.socket = connect(
            f"ws://127.0.0.1:{self.port}/ws/chat/{self.room}/{after}",
            origin=f"http://127.0.0.1:{self.port}",
            additional_headers={"Cookie": self.cookie},
            open_timeout=timeout,
            max_size=None,
        )
        return self

    def reconnect(self, within: float = 20) -> None:
        """Try again (like the page's backoff, but faster) until it works, then send
        what was not acknowledged."""
        deadline = time.monotonic() + within
        while True:
            try:
                self.connect(timeout=2)
                break
            except (OSError, InvalidStatus, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        for client_id in self.pending:
            self._send(client_id)

    def send(self, text: str) -> str:
        client_id = uuid.uuid4().hex
        self.pending[client_id] = text
        self._send(client_id)
        return client_id

    def _send(self, client_id: str) -> None:
        frame = {"type": "message", "text": self.pending[client_id]}
        self.socket.send(json.dumps({**frame, "client_id": client_id}))

    def _take(self, frame: dict) -> None:
        self.frames.append(frame)
        if frame["type"] == "ack":
            self.pending.pop(frame["client_id"], None)
        elif frame["type"] == "presence":
            self.online = set(frame["users"])
        elif frame["type"] == "presence_diff":
            self.online = (self.online | set(frame["joined"])) - set(frame["left"])
        found = frame["messages"] if frame["type"] == "history" else [frame]
        for message in found:
            if message.get("type") == "message" and (
                self.last_id is None or message["id"] > self.last_id
            ):
                self.messages.append(message)
                self.last_id = message["id"]

    def receive(self, timeout: float) -> dict | None:
        try:
            frame = json.loads(self.socket.recv(timeout=timeout))
        except TimeoutError:
            return None
        self._take(frame)
        return frame

    def wait_for(self, predicate, timeout: float = 10) -> bool:
        """Read frames until predicate(self) holds; False if it does not in time."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.receive(timeout=min(left, 0.5))
        return True

    def texts(self) -> list[str]:
        return [message["text"] for message in self.messages]

    def wait_until_closed(self, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.receive(timeout=0.5)
            except ConnectionClosed:
                return True
        return False

    def vanish(self) -> None:
        """Drop the TCP connection without a WebSocket close frame (a dead laptop)."""
        self.socket.socket.shutdown(socket.SHUT_RDWR)
        self.socket.socket.close()

    def close(self) -> None:
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError:
                pass
