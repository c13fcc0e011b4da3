"""A chat client that behaves like the room page, for tests that use a real server.

It shows each message once, in the order of its number, as the page does.
"""

import json
import time

from websockets.sync.client import connect


class ChatClient:
    def __init__(self, port: int, room: str, cookie: str, name: str = ""):
        self.port = port
        self.room = room
        self.cookie = cookie
        self.name = name
        self.socket = None
        self.messages: list[dict] = []  # every message, in the order shown
        self.frames: list[dict] = []  # every frame received

    def connect(self, timeout: float = 5) -> "ChatClient":
        self.socket = connect(
            f"ws://127.0.0.1:{self.port}/ws/chat/{self.room}/",
            origin=f"http://127.0.0.1:{self.port}",
            additional_headers={"Cookie": self.cookie},
            open_timeout=timeout,
            max_size=None,
        )
        return self

    def send(self, text: str) -> None:
        self.socket.send(json.dumps({"type": "message", "text": text}))

    def _take(self, frame: dict) -> None:
        self.frames.append(frame)
        found = frame["messages"] if frame["type"] == "history" else [frame]
        for message in found:
            if message.get("type") == "message":
                self.messages.append(message)

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

    def close(self) -> None:
        if self.socket is not None:
            try:
                self.socket.close()
            except OSError:
                pass
