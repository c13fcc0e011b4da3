#!/bin/sh
# deploy/app-server.sh: one app server, the chat under uvicorn, behind nginx.
# Run from the step folder, in every app server (machine or container):
#   HOST, PORT   where it listens (default 0.0.0.0:8000)
#   WORKERS      processes in this app server (default 1)
# --ws-max-size: the largest WebSocket frame it accepts, the chat's own
#   CHAT_MAX_FRAME_BYTES, from the same variable (uvicorn's default is 16 MiB); a bigger frame closes its
#   socket with code 1009 before the chat sees it.
# --ws-per-message-deflate false: browsers ask to compress every frame, and the
#   server would compress each message once for each member of the room, with a
#   compressor per socket: CPU and memory that short chat messages do not repay.
# --proxy-headers: the client's address and scheme come from nginx's X-Forwarded-*
#   headers, trusted from the addresses in FORWARDED_ALLOW_IPS (127.0.0.1 by default).
exec python -m uvicorn mysite.asgi:application \
    --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" --workers "${WORKERS:-1}" \
    --ws-max-size "${CHAT_MAX_FRAME_BYTES:-65536}" --ws-per-message-deflate false --proxy-headers
