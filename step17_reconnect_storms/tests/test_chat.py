"""The chat through a real server: what a browser meets over a real WebSocket."""

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from testsupport.servers import runserver

# The Origin header a browser sends from the page served by `make stepN`.
ORIGIN = "http://127.0.0.1:8000"


def test_an_anonymous_socket_is_closed_with_4401_and_refused_names_leave_no_traceback(
    step_dir,
):
    with runserver(step_dir) as server:
        assert server.wait_until_listening(), server.output
        base = f"ws://127.0.0.1:{server.port}/ws/chat"
        for path in ("caf%C3%A9", "x" * 150, "has%20space", "../x"):
            with pytest.raises(InvalidStatus):
                connect(f"{base}/{path}/", origin=ORIGIN, open_timeout=5).close()
        with connect(f"{base}/lobby/", origin=ORIGIN, open_timeout=5) as socket:
            with pytest.raises(ConnectionClosed) as closed:
                socket.recv(timeout=5)

    assert closed.value.rcvd.code == 4401
    assert "Traceback" not in server.output, server.output
