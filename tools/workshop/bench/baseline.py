"""The yardstick: the simplest broadcast server that speaks the tutorial's protocol.

Every text frame sent on /ws/chat/<room>/ goes to every socket in that room,
including the sender, unchanged ({"message": ...} in, {"message": ...} out).
No framework, no channel layer, no database: what is left is the cost of
WebSockets themselves. Run: python -m workshop.bench.baseline PORT
"""

import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

rooms: dict[str, set] = {}


async def chat(websocket):
    room = rooms.setdefault(websocket.request.path, set())
    room.add(websocket)
    try:
        async for frame in websocket:
            broadcast(room, frame)
    finally:
        room.discard(websocket)


async def main(port: int):
    # Compression off, as Daphne and Uvicorn have it by default.
    async with serve(chat, "127.0.0.1", port, compression=None, max_queue=None):
        print(f"baseline broadcast server on 127.0.0.1:{port}", flush=True)
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
