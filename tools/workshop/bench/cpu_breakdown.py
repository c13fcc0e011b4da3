"""Where the last step's CPU goes: two profiles of one server (through the probe),
while the room fills (every client logs in and joins), then while messages go out
at full speed; each with the CPU time it took, per connection and per delivery."""

import asyncio
import signal

from workshop.bench import breakdown
from workshop.bench.figures import (
    CPU_TARGET,
    SMALL_CPU_TARGET,
    Run,
    num,
    percent,
    times,
)
from workshop.bench.harness import Bench
from workshop.bench.load import run_room
from workshop.bench.server import Idle, Server, cpu_seconds, wait_for_file
from workshop.bench.variants import BASELINE, Variant


def measure(
    bench: Bench, variant: Variant, clients: int, key: str = "cpu", probe: str = "cpu"
) -> None:
    """Profile one server while `clients` join, then while messages go out; the
    figures go to bench.breakdowns[key]."""
    folder = bench.scratch / f"{key}-{variant.key}"
    folder.mkdir()
    env = bench.env_for(variant, unlimited=True)
    senders = min(bench.plan.senders, clients)
    # Three times the deliveries of a measured run: more samples.
    per_sender = 3 * bench.plan.per_sender(clients)
    with Server(bench, variant, env, probe=(probe, str(folder))) as server:
        marks = {"cpu": cpu_seconds(server.pid)}
        server.signal(signal.SIGUSR2)

        def on_ready():
            server.signal(signal.SIGUSR2)
            marks["joining"] = cpu_seconds(server.pid) - marks["cpu"]
            # Two signals at once could arrive as one: one profile at a time.
            wait_for_file(folder / "profile-1.json")
            server.signal(signal.SIGUSR2)
            marks["cpu"] = cpu_seconds(server.pid)

        def on_done():
            marks["messages"] = cpu_seconds(server.pid) - marks["cpu"]
            server.signal(signal.SIGUSR2)

        result = asyncio.run(
            run_room(
                server.url("profile"),
                clients,
                senders,
                per_sender,
                variant.protocol,
                server.origin,
                bench.cookies_for(variant, clients),
                on_ready=on_ready,
                on_done=on_done,
                idle=Idle(server.pid),
            )
        )
        wait_for_file(folder / "profile-2.json")
    step_dir = variant.step.path if variant.step else None
    joining = breakdown.cpu(folder / "profile-1.json", step_dir)
    joining["cpu_ms_per_connection"] = marks["joining"] / clients * 1e3
    messages = breakdown.cpu(folder / "profile-2.json", step_dir)
    messages.update(
        deliveries=result.received,
        delivery_ratio=result.ratio,
        cpu_us_per_delivery=marks["messages"] / result.received * 1e6
        if result.received
        else None,
    )
    bench.breakdowns[key] = {
        "variant": variant.key,
        "clients": clients,
        "joining": joining,
        "messages": messages,
    }


def measure_small(bench: Bench, variant: Variant, clients: int) -> None:
    measure(bench, variant, clients, key="cpu_small")


def measure_floor(bench: Bench, variant: Variant, clients: int) -> None:
    """The same profiles of the server whose own calls return at once (probe.FLOOR):
    where the CPU of a join goes without the step's own work."""
    measure(bench, variant, clients, key="cpu_floor", probe="floor+cpu")


# --- in the note ---------------------------------------------------------------------


def profile(run: Run, key: str):
    """One profile's breakdown, its variant's median CPU per delivery in the same
    room, and the baseline's; None if the run has no such profile."""
    cpu = run.data["breakdowns"].get(key)
    if not cpu:
        return None
    clients = cpu["clients"]
    per_delivery = run.median(
        "throughput", cpu["variant"], clients, "cpu_us_per_delivery"
    )
    base = run.median("throughput", BASELINE, clients, "cpu_us_per_delivery")
    return cpu, per_delivery, base


def session_share(functions: dict) -> float:
    """What Channels' SessionMiddleware costs on every frame sent: its reads of the
    lazy session (django/utils/functional.py)."""
    return sum(
        share
        for what, share in functions.items()
        if what.startswith(("django/utils/functional.py", "channels/sessions.py"))
    )


def table(entries: list[dict], per: float, spec: str) -> list[dict]:
    """A profile's rows of at least half a percent, each with its share of `per`."""
    return [
        {
            "what": e["what"],
            "share": percent(e["share"]),
            "per": num(e["share"] * per, spec),
        }
        for e in entries
        if e["share"] >= 0.005
    ]


def report(run: Run) -> dict | None:
    found = profile(run, "cpu")
    if not found:
        return None
    cpu, per_delivery, base = found
    clients = cpu["clients"]
    messages, joining = cpu["messages"], cpu["joining"]
    per_join = joining["cpu_ms_per_connection"]

    shares = {e["what"]: e["share"] for e in messages["components"]}
    functions = {e["what"]: e["share"] for e in messages["functions"]}
    step = run.data["last_step"]["name"]
    session = session_share(functions)
    join_functions = {e["what"]: e["share"] for e in joining["functions"]}
    join_shares = {e["what"]: e["share"] for e in joining["components"]}
    connections = sum(
        share
        for what, share in join_functions.items()
        if what.split(":")[-1] in ("get_new_connection", "_close", "close")
    )
    return {
        "variant": run.name(cpu["variant"]),
        "clients": clients,
        "per_delivery": num(per_delivery),
        "baseline": num(base),
        "budget": num(base * CPU_TARGET if base else None),
        "seconds": num(messages["seconds"], ".1f"),
        "join_seconds": num(joining["seconds"], ".1f"),
        "sampler": percent(
            messages["sampler_seconds"]
            / (messages["seconds"] + messages["sampler_seconds"])
        ),
        "components": table(messages["components"], per_delivery or 0, ".1f"),
        "functions": table(messages["functions"], per_delivery or 0, ".1f"),
        "join_components": table(joining["components"], per_join, ".2f"),
        "join_functions": table(joining["functions"][:12], per_join, ".2f"),
        "join_ms": num(per_join, ".1f"),
        "channels_share": percent(shares.get("channels", 0)),
        "channels_us": num(shares.get("channels", 0) * per_delivery, ".0f")
        if per_delivery
        else "—",
        "dispatch_share": percent(
            functions.get("channels/utils.py:await_many_dispatch", 0)
        ),
        "session_share": percent(session),
        "session_us": num(session * per_delivery, ".0f") if per_delivery else "—",
        "layer_share": percent(
            shares.get("channels_redis", 0) + shares.get("redis", 0)
        ),
        "server_share": percent(
            shares.get("uvicorn", 0)
            + shares.get("websockets", 0)
            + shares.get("event loop", 0)
        ),
        "django_share": percent(shares.get("django", 0)),
        "step_share": percent(sum(v for k, v in shares.items() if k.startswith(step))),
        "without_channels": times(per_delivery * (1 - shares.get("channels", 0)) / base)
        if per_delivery and base
        else "—",
        "connections_share": percent(connections),
        "connections_ms": num(connections * per_join, ".1f"),
        "presence_share": percent(
            join_functions.get("channels/generic/websocket.py:encode_json", 0)
        ),
        "join_django_share": percent(join_shares.get("django", 0)),
        "join_django_ms": num(join_shares.get("django", 0) * per_join, ".1f"),
        "join_rest_share": percent(
            sum(
                join_shares.get(what, 0)
                for what in (
                    "channels",
                    "channels_redis",
                    "redis",
                    "uvicorn",
                    "websockets",
                    "event loop",
                    "asgiref",
                )
            )
        ),
    }


def report_small(run: Run) -> dict | None:
    """The profile of messages in a small room: what each message costs, shared by
    few deliveries."""
    found = profile(run, "cpu_small")
    if not found:
        return None
    cpu, per_delivery, base = found
    clients = cpu["clients"]
    messages = cpu["messages"]
    shares = {e["what"]: e["share"] for e in messages["components"]}
    functions = {e["what"]: e["share"] for e in messages["functions"]}

    def us(share):
        return num(share * per_delivery, ".0f") if per_delivery else "—"

    session = session_share(functions)
    channels = shares.get("channels", 0)
    big = run.data["breakdowns"].get("cpu")
    big_per_delivery = (
        run.median("throughput", big["variant"], big["clients"], "cpu_us_per_delivery")
        if big
        else None
    )
    return {
        "variant": run.name(cpu["variant"]),
        "clients": clients,
        "others": clients - 1,
        "per_delivery": num(per_delivery),
        "baseline": num(base),
        "budget": num(base * SMALL_CPU_TARGET if base else None),
        "seconds": num(messages["seconds"], ".1f"),
        "components": [
            {
                "what": DATABASE_THREAD if e["what"] == "concurrent" else e["what"],
                "share": percent(e["share"]),
                "per": num(e["share"] * per_delivery, ".1f") if per_delivery else "—",
            }
            for e in messages["components"]
            if e["share"] >= 0.005
        ],
        "per_message": num(per_delivery * (clients - 1), ",.0f")
        if per_delivery
        else "—",
        "big_clients": big["clients"] if big else None,
        "big_per_delivery": num(big_per_delivery),
        # A delivery costs a few times more here than in the big room: the rest is
        # what each message costs once, shared by few.
        "mostly_per_message": bool(
            per_delivery and big_per_delivery and per_delivery > 2 * big_per_delivery
        ),
        "thread_share": percent(shares.get("concurrent", 0)),
        "thread_us": us(shares.get("concurrent", 0)),
        "asgiref_share": percent(shares.get("asgiref", 0)),
        "loop_share": percent(shares.get("event loop", 0)),
        "redis_share": percent(
            shares.get("redis", 0) + shares.get("channels_redis", 0)
        ),
        "channels_share": percent(channels),
        "channels_us": us(channels),
        "session_share": percent(session),
        "session_us": us(session),
        "without_channels": times(per_delivery * (1 - channels) / base)
        if per_delivery and base
        else "—",
    }


def report_floor(run: Run) -> dict | None:
    """The profile of a room filling on the server without the step's own calls."""
    cpu = run.data["breakdowns"].get("cpu_floor")
    if not cpu:
        return None
    joining = cpu["joining"]
    per_join = joining["cpu_ms_per_connection"]
    shares = {e["what"]: e["share"] for e in joining["components"]}
    step = run.data["last_step"]["name"]
    return {
        "clients": cpu["clients"],
        "seconds": num(joining["seconds"], ".1f"),
        "join_ms": num(per_join, ".2f"),
        "components": [
            {
                **row,
                "what": DATABASE_THREAD if row["what"] == "concurrent" else row["what"],
            }
            for row in table(joining["components"], per_join, ".2f")
        ],
        "functions": table(joining["functions"][:12], per_join, ".2f"),
        "django_ms": num(shares.get("django", 0) * per_join, ".2f"),
        "step_ms": num(
            sum(v for k, v in shares.items() if k.startswith(step)) * per_join, ".2f"
        ),
        "rest_ms": num(
            sum(
                shares.get(what, 0)
                for what in (
                    "channels",
                    "channels_redis",
                    "redis",
                    "uvicorn",
                    "websockets",
                    "event loop",
                    "asgiref",
                )
            )
            * per_join,
            ".2f",
        ),
    }


# The worker thread's CPU between two samples, when the sample finds it waiting for
# its next call: the calls it ran in between (the ORM's queries, and asgiref's half
# of each trip).
DATABASE_THREAD = "the database thread (between samples)"
