"""The chat's protocol in one place: the frames, the error codes, the close codes,
and the checks that turn whatever a client sends into a message, or a refusal.

The README's protocol tables list the same frames and codes; a test checks that they
agree with this module.
"""

import json
import re
import reprlib
from dataclasses import dataclass
from urllib.parse import parse_qs

from django.conf import settings

# What a client sends, and what the server sends (see the README: the protocol).
CLIENT_FRAMES = ("message",)
SERVER_FRAMES = (
    "history",
    "message",
    "ack",
    "presence",
    "presence_diff",
    "notification",
    "error",
)

# Close codes. 4000-4999 are for applications. 4008 echoes the WebSocket standard's
# 1008 "policy violation", which Daphne's WebSocket library will not send.
CLOSE_POLICY_VIOLATION = 4008  # too many invalid frames, or too many sockets
CLOSE_LOGIN_REQUIRED = 4401  # nobody is logged in: the page goes to the login page
CLOSE_CODES = (CLOSE_POLICY_VIOLATION, CLOSE_LOGIN_REQUIRED)

# What the page makes up for each message it sends (see room.html).
CLIENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# A message number in ?after=: ASCII digits that fit the database's integer.
MESSAGE_NUMBER = re.compile(r"[0-9]{1,18}")

# Every error code, and what its "detail" says. A refusal of a message that could
# have been sent as it is (too long, too fast) carries the message's text and client
# id back, for the page to give back to its writer.
ERRORS = {
    "binary_frame": "Frames must be JSON text, not binary.",
    "frame_too_large": "A frame can be at most {limit} bytes.",
    "invalid_json": "The frame is not valid JSON: {error}.",
    "invalid_frame": 'A frame must be a JSON object with a "type".',
    "unknown_type": "Unknown frame type {type}: a client sends only"
    ' {{"type": "message", "text": "..."}}.',
    "missing_text": 'A message needs a "text".',
    "text_not_string": "A message's text must be a string.",
    "empty_text": "A message cannot be empty.",
    "invalid_text": "A message's text must be valid Unicode, without NUL characters.",
    "invalid_client_id": "A client_id is 1 to 64 ASCII letters, digits, hyphens or"
    " underscores.",
    "text_too_long": "A message can be at most {limit} bytes (UTF-8).",
    "rate_limited": "At most {limit} messages a second; this one was not sent.",
    "invalid_after": "?after= must be the number of a message; here are the latest"
    " instead.",
}


@dataclass(frozen=True)
class ChatMessage:
    text: str
    client_id: str | None = None


class Refused(Exception):
    """A frame the server will not act on; frame() is the error frame it answers."""

    def __init__(self, code, message=None, **details):
        super().__init__(code)
        self.code = code
        self.message = message  # the refused message, given back with the error
        self.detail = ERRORS[code].format(**details)

    def frame(self) -> dict:
        error = {"type": "error", "code": self.code, "detail": self.detail}
        if self.message is not None:
            error["text"] = self.message.text
            if self.message.client_id is not None:
                error["client_id"] = self.message.client_id
        return error


def parse(text_data=None, bytes_data=None) -> ChatMessage:
    """The message a frame from the browser carries; Refused for anything else."""
    if text_data is None:
        raise Refused("binary_frame")
    # Measured before parsing: a huge frame costs no more than this. (The ASGI
    # server closes a socket that sends one bigger still: see the README.)
    limit = settings.CHAT_MAX_FRAME_BYTES
    if len(text_data) > limit or (utf8_length(text_data) or 0) > limit:
        raise Refused("frame_too_large", limit=limit)
    try:
        content = json.loads(text_data)
    except ValueError as error:
        raise Refused("invalid_json", error=error) from None
    except RecursionError:
        raise Refused("invalid_json", error="nested too deeply") from None
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
    # JSON can spell text that is not Unicode, which no database can store: half of
    # a UTF-16 surrogate pair ("\ud800"); or a NUL character, which PostgreSQL
    # cannot store in text. Both found by Hypothesis.
    if "\x00" in text or utf8_length(text) is None:
        raise Refused("invalid_text")
    if client_id is not None and not (
        isinstance(client_id, str) and CLIENT_ID.fullmatch(client_id)
    ):
        raise Refused("invalid_client_id")
    message = ChatMessage(text, client_id)
    limit = settings.CHAT_MAX_MESSAGE_BYTES
    if utf8_length(text) > limit:
        raise Refused("text_too_long", message, limit=limit)
    return message


def requested_after(query_string: bytes) -> int | None:
    """The number a reconnecting page says it has already (?after=41), or None.
    Refused (the latest messages are sent all the same) if it is not a number."""
    query = parse_qs(query_string.decode("latin-1"))
    if "after" not in query:
        return None
    value = query["after"][0]
    if not MESSAGE_NUMBER.fullmatch(value):
        raise Refused("invalid_after")
    return int(value)


def utf8_length(text):
    """How many bytes the text takes in UTF-8; None if it is not valid Unicode."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None
