"""make stepN-stack: how many sockets each app server holds, said when it changes.

The stack says when an app server stops; this says how many connections each one
held, so that after killing one you can watch its clients move to the other. It
counts the established TCP connections to each port an app server (uvicorn, a
process of the stack) listens on: nginx opens one for each WebSocket, and none
that outlives a page request (it speaks HTTP/1.0 to the app servers for pages).
"""

import threading

import psutil

INTERVAL = 2.0  # seconds between two looks


def app_server_ports(root_pid: int) -> set[int]:
    """The ports the stack's uvicorn processes listen on."""
    ports = set()
    try:
        processes = psutil.Process(root_pid).children(recursive=True)
    except psutil.Error:
        return ports
    for process in processes:
        try:
            if "uvicorn" not in " ".join(process.cmdline()):
                continue
            for connection in process.net_connections(kind="tcp"):
                if connection.status == psutil.CONN_LISTEN:
                    ports.add(connection.laddr.port)
        except psutil.Error:
            continue
    return ports


def connections_to(ports: set[int]) -> dict[int, int]:
    counts = dict.fromkeys(ports, 0)
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return counts
    for connection in connections:
        if (
            connection.status == psutil.CONN_ESTABLISHED
            and connection.laddr
            and connection.laddr.port in counts
        ):
            counts[connection.laddr.port] += 1
    return counts


def describe(counts: dict[int, int]) -> str:
    return ", ".join(
        f"port {port}: {count} socket{'s' if count != 1 else ''}"
        for port, count in sorted(counts.items())
    )


def watch(root_pid: int, stop: threading.Event, interval: float = INTERVAL) -> None:
    held: dict[int, int] = {}
    while not stop.wait(interval):
        ports = app_server_ports(root_pid)
        for port in sorted(set(held) - ports):
            count = held.pop(port)
            print(
                f"(The app server on port {port} is gone: it held {count}"
                f" socket{'s' if count != 1 else ''}.)",
                flush=True,
            )
        now = connections_to(ports)
        if now != held and any([*now.values(), *held.values()]):
            print(f"(App servers: {describe(now)}.)", flush=True)
        held = now


def start(process) -> threading.Event:
    """Watch the stack started as `process`; set the returned event to stop."""
    stop = threading.Event()
    threading.Thread(target=watch, args=(process.pid, stop), daemon=True).start()
    return stop
