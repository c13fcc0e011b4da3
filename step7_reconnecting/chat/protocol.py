"""The chat's protocol in one place: the frames, the error codes, the close codes,
and the check that turns whatever a client sends into a message, or a refusal.

The README's protocol tables list the same frames and codes; a test checks that they
agree with this module.
"""

import json
import re
import reprlib
from dataclasses import dataclass
from urllib.parse import parse_qs

# What a client sends, and what the server sends (see the README: the protocol).
CLIENT_FRAMES = ("message",)
SERVER_FRAMES = ("history", "message", "ack", "error")

# Close codes: 4000-4999 are for applications.
CLOSE_LOGIN_REQUIRED = 4401  # nobody is logged in: the page goes to the login page
CLOSE_CODES = (CLOSE_LOGIN_REQUIRED,)

# What the page makes up for each message it sends (see room.html).
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Every error code, and what its "detail" says.
ERRORS = {
    "binary_frame": "Frames must be JSON text, not binary.",
    "invalid_json": "The frame is not valid JSON: {error}.",
    "invalid_frame": 'A frame must be a JSON object with a "type".',
    "unknown_type": "Unknown frame type {type}: a client sends only"
    ' {{"type": "message", "text": "..."}}.',
    "missing_text": 'A message needs a "text".',
    "text_not_string": "A message's text must be a string.",
    "empty_text": "A message cannot be empty.",
    "invalid_client_id": "A client_id is 1 to 64 ASCII letters, digits, hyphens or"
    " underscores.",
}


@dataclass(frozen=True)
class ChatMessage:
    text: str
    client_id: str | None = None


class Refused(Exception):
    """A frame the server will not act on; frame() is the error frame it answers."""

    def __init__(self, code, **details):
        super().__init__(code)
        self.code = code
        self.detail = ERRORS[code].format(**details)

    def frame(self) -> dict:
        return {"type": "error", "code": self.code, "detail": self.detail}


def parse(text_data=None, bytes_data=None) -> ChatMessage:
    """The message a frame from the browser carries; Refused for anything else."""
    if text_data is None:
        raise Refused("binary_frame")
    try:
        content = json.loads(text_data)
    except ValueError as error:
        raise Refused("invalid_json", error=error) from None
    if not isinstance(content, dict) or "type" not in content:
        raise Refused("invalid_frame")
    if content["type"] not in CLIENT_FRAMES:
        # reprlib: a short picture of whatever was sent, however big.
        raise Refused("unknown_type", type=reprlib.repr(content["type"]))
    if "text" not in content:
        raise Refused("missing_text")
    text, client_id = content["text"], content.get("client_id")
    if not isinstance(text, str):
        raise Refused("text_not_string")
    if not text.strip():
        raise Refused("empty_text")
    if client_id is not None and not (
        isinstance(client_id, str) and CLIENT_ID.fullmatch(client_id)
    ):
        raise Refused("invalid_client_id")
    return ChatMessage(text, client_id)


def requested_after(query_string: bytes) -> int | None:
    """The number a reconnecting page says it has already (?after=41), or None."""
    query = parse_qs(query_string.decode("latin-1"))
    value = query.get("after", [""])[0]
    # ASCII digits only ("²" is a digit to isdigit(), not to int()), and few enough
    # for the database's integer.
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None
