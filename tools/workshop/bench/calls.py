"""What a join and a message of the last step ask of the database and of Redis, call
by call: each call measured alone, many times, in a process with the step's own
settings (its SQLite database, the benchmark's Redis, DEBUG off), as CPU time per
call. The profiles say where a server's CPU goes; this says what each of the step's
calls costs, and how much of that is the trip to the database thread alone."""

import asyncio
import json
import os
import subprocess
import sys
import time

from workshop.bench import saturation
from workshop.bench.figures import (
    JOIN_TARGET_MS,
    SMALL_CPU_TARGET,
    Run,
    median,
    num,
    spread,
)
from workshop.bench.harness import Bench
from workshop.bench.load import run_room
from workshop.bench.server import Idle, Server, cpu_seconds
from workshop.bench.variants import BASELINE, Variant

# Run in the step's `manage.py shell`: one JSON line, {call: [µs per call, ...]}.
CODE = """
import asyncio, json, time
from channels.auth import get_user
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from importlib import import_module
from chat import limits, online, store

SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
REPEATS, CALLS = ROUNDS, PER_ROUND
BATCH = 4  # the senders of the room of 10 at full speed: a batch of each of them
# Sockets `enter` counts online are another user's, with no cap: `user` sends.
settings.CHAT_MAX_SOCKETS_PER_USER = 10**9
user, other = get_user_model().objects.filter(username__in=["bench0", "bench1"])
user, other = (user, other) if user.username == "bench0" else (other, user)
key = next(s.session_key for s in Session.objects.all()
           if s.get_decoded().get("_auth_user_id") == str(user.pk))
for _ in range(60):
    store.save_message("bench-calls-history", user, "hello", None)
layer = get_channel_layer()
counter = iter(range(10**9))

def nothing():
    return None

CALLS_OF = {
    "trip": lambda: database_sync_to_async(nothing)(),
    "user": lambda: get_user({"session": SessionStore(session_key=key)}),
    "enter": lambda: online.backend().enter(
        "bench-calls-enter", other, f"bench-calls.{next(counter)}"),
    "history_empty": lambda: database_sync_to_async(store.history)(
        f"bench-calls-empty-{next(counter)}", None, settings.CHAT_HISTORY_LENGTH),
    "history": lambda: database_sync_to_async(store.history)(
        "bench-calls-history", None, settings.CHAT_HISTORY_LENGTH),
    "told": lambda: online.backend().told("bench-calls-enter"),
    "rate_limit": lambda: limits.allow_messages([user]),
    "store": lambda: database_sync_to_async(store.save_messages)(
        "bench-calls-store", [(user, "hello", None)]),
    "rate_limit_batch": lambda: limits.allow_messages([user] * BATCH),
    "store_batch": lambda: database_sync_to_async(store.save_messages)(
        "bench-calls-store", [(user, "hello", None)] * BATCH),
    "broadcast": lambda: layer.group_send(
        "bench-calls", {"type": "chat.messages", "messages": [[1, "x" * 150]]}),
}

async def measure():
    # As in a room of N: the list the room was told of has N names.
    for i in range(NAMES):
        await online.backend().enter("bench-calls-enter", other, f"bench-calls.{i}")
    await online.backend().changes({"bench-calls-enter"})
    found = {name: [] for name in CALLS_OF}
    for call in CALLS_OF.values():
        for _ in range(20):
            await call()
    # Every call once in each round: a machine that drifts moves them all.
    for _ in range(REPEATS):
        for name, call in CALLS_OF.items():
            started = time.process_time()
            for _ in range(CALLS):
                await call()
            found[name].append((time.process_time() - started) / CALLS * 1e6)
    return found

print(json.dumps(asyncio.run(measure())))
"""

# What each call is, in the note's words, and whose cost it is.
CALLS = [
    ("trip", "a trip to the database thread, for a function that does nothing"),
    ("user", "the session and its user (Channels' `AuthMiddlewareStack`)"),
    (
        "enter",
        "the socket counted online, under the cap, one script run by Redis"
        " (`online` `enter`)",
    ),
    ("history_empty", "the history of an empty room (`store.history`)"),
    ("history", "the history of a room with messages (`store.history`)"),
    ("told", "who is online, in a room of N (`online` `told`)"),
    (
        "rate_limit",
        "the rate limit of a message alone, one script run by Redis"
        " (`limits.allow_messages`)",
    ),
    ("store", "storing a message alone (`store.save_messages`)"),
    (
        "rate_limit_batch",
        "the rate limit of a batch of 4 messages, one script (`limits.allow_messages`)",
    ),
    (
        "store_batch",
        "storing a batch of 4 messages, one transaction (`store.save_messages`)",
    ),
    ("broadcast", "the broadcast, one message to Redis (`group_send`)"),
]
JOIN = ("user", "enter", "history_empty", "told")
OWN = ("enter", "history_empty", "told")  # the step's own: the session is Channels'
# Of the join's own calls, those that go to the database thread (the floor's stub of
# the history still does).
OWN_TRIPS = ("history_empty",)
JOIN_TRIPS = ("user", *OWN_TRIPS)
PER_ROUND = 300  # calls of each kind in a round
MESSAGE = ("rate_limit", "store", "broadcast")
BATCH = 4  # as in CODE


def measure(bench: Bench, variant: Variant, rounds: int, names: int) -> None:
    """Each call, PER_ROUND times a round; `enter` in a room whose list of who is
    online has `names` names."""
    env = bench.env_for(variant, unlimited=True)
    cores = bench.server_cores
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            CODE.replace("ROUNDS", str(rounds))
            .replace("PER_ROUND", str(PER_ROUND))
            .replace("NAMES", str(names)),
        ],
        cwd=variant.step.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        # On the server's core, as the server runs: a trip to the database thread
        # is a switch between two threads of one core there.
        preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None,
    )
    if result.returncode:
        raise RuntimeError(f"measuring the calls failed: {result.stderr[-2000:]}")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    bench.breakdowns["calls"] = {
        "variant": variant.key,
        "calls": found,
        "per_round": PER_ROUND,
        "names": names,
    }


def measure_floor(bench: Bench, variant: Variant, clients: int) -> None:
    """A room of `clients` filling, on a server whose own calls of a join return at
    once (probe.FLOOR): the CPU per join that is left. Measured as the throughput
    runs measure a join; a run that fails is reported, and left out."""
    env = bench.env_for(variant, unlimited=True)
    marks = {}
    floors = bench.breakdowns.setdefault("join_floor", {"variant": variant.key})
    floors.setdefault("clients", clients)
    try:
        with Server(bench, variant, env, probe=("floor", str(bench.scratch))) as server:
            time.sleep(0.3)
            marks["start"] = cpu_seconds(server.pid)

            def on_ready():
                marks["joining"] = cpu_seconds(server.pid) - marks["start"]

            result = asyncio.run(
                run_room(
                    server.url("floor"),
                    clients,
                    1,
                    1,
                    variant.protocol,
                    server.origin,
                    bench.cookies_for(variant, clients),
                    on_ready=on_ready,
                    idle=Idle(server.pid),
                )
            )
        if result.errors or "joining" not in marks:
            raise RuntimeError(f"not every client joined: {result.errors[:3]}")
    except Exception as error:
        floors.setdefault("errors", []).append(f"{type(error).__name__}: {error}")
        print(f"  join floor failed: {error}", flush=True)
        return
    floors.setdefault("cpu_ms_per_join", []).append(marks["joining"] / clients * 1e3)


def measure_message_floor(
    bench: Bench, variant: Variant, clients: int, senders: int, per_sender: int, round_
) -> None:
    """A room of `clients` at full speed, as the throughput runs measure it, on a
    server whose rate limit and storing return at once (probe.FLOOR): the CPU per
    delivery that is left. A run that fails, or loses a message, is reported and left
    out."""
    floors = bench.breakdowns.setdefault(
        "message_floor", {"variant": variant.key, "clients": clients}
    )
    try:
        found = saturation.full_room(
            bench,
            variant,
            f"floor{round_}",
            clients,
            senders,
            per_sender,
            probe=("floor", str(bench.scratch)),
        )
        if found["delivery_ratio"] < 1 or not found["cpu_us_per_delivery"]:
            raise RuntimeError(f"{found['delivery_ratio']:.1%} delivered")
    except Exception as error:
        floors.setdefault("errors", []).append(f"{type(error).__name__}: {error}")
        print(f"  message floor failed: {error}", flush=True)
        return
    floors.setdefault("rounds", []).append(
        {"round": round_, "cpu_us_per_delivery": found["cpu_us_per_delivery"]}
    )


# --- in the note ---------------------------------------------------------------------


def floor_case(floors: list[float], target: float = JOIN_TARGET_MS) -> str:
    """Whether a join (or a message) without the step's own calls is over the target
    in every round, within it in every round, or on both sides of it."""
    if min(floors) > target:
        return "over"
    if max(floors) < target:
        return "within"
    return "near"


def message_floor(run: Run, small: int, trip_us: float) -> dict:
    """A message in a room of `small` without the step's own calls, round by round
    against the baseline of the same round: with the one trip to the database thread
    that the stub of storing still makes, and without it."""
    found = run.data["breakdowns"].get("message_floor", {})
    baseline = {
        r["round"]: r.get("cpu_us_per_delivery")
        for r in run.runs(BASELINE, "throughput")
        if r["clients"] == small
    }
    pairs = [
        (f["cpu_us_per_delivery"], baseline[f["round"]])
        for f in found.get("rounds", [])
        if baseline.get(f["round"])
    ]
    if not pairs:
        return {"message_floor_rounds": 0}
    trip = trip_us / (small - 1)  # a message's one trip, shared by its deliveries
    ratios = [us / base for us, base in pairs]
    without = [(us - trip) / base for us, base in pairs]
    return {
        "message_floor_rounds": len(pairs),
        "message_floor_us": spread(
            {
                "median": median([us for us, _ in pairs]),
                "min": min(us for us, _ in pairs),
                "max": max(us for us, _ in pairs),
            }
        ),
        "message_floor_ratio": spread(
            {"median": median(ratios), "min": min(ratios), "max": max(ratios)},
            ".1f",
        )
        + "×",
        "message_floor_trip_us": num(trip, ".0f"),
        "message_floor_without_trip": spread(
            {"median": median(without), "min": min(without), "max": max(without)},
            ".1f",
        )
        + "×",
        "message_floor_case": floor_case(without, SMALL_CPU_TARGET),
        "message_floor_failed": len(found.get("errors", [])),
        "small_target": SMALL_CPU_TARGET,
    }


def report(run: Run, joined_in: int, small: int) -> dict | None:
    """The calls, and what a join and a message ask of them, beside the join's CPU
    in a room of `joined_in` and the per-message CPU in a room of `small`, measured
    in the throughput runs; and the join on a server without the step's own calls."""
    calls = run.data["breakdowns"].get("calls")
    if not calls:
        return None
    us = {name: median(values) for name, values in calls["calls"].items()}
    trip = us["trip"]
    join = sum(us[name] for name in JOIN)
    message = sum(us[name] for name in MESSAGE)
    own = sum(us[name] for name in OWN)
    per_join = run.median("throughput", calls["variant"], joined_in, "cpu_ms_per_join")
    floors = run.data["breakdowns"].get("join_floor", {}).get("cpu_ms_per_join")
    floor = median(floors) if floors else None
    # The stubs of the step's calls to the database still go to its thread and back.
    stub_trips = len(OWN_TRIPS) * trip / 1000
    per_delivery = run.median(
        "throughput", calls["variant"], small, "cpu_us_per_delivery"
    )
    per_message = per_delivery * (small - 1) if per_delivery else None
    base = run.median("throughput", BASELINE, small, "cpu_us_per_delivery")
    return {
        "variant": run.name(calls["variant"]),
        "per_round": calls.get("per_round", 300),
        "names": calls.get("names"),
        "rows": [
            {"what": what, "us": num(us[name], ",.0f")}
            for name, what in CALLS
            if name in us
        ],
        "join_ms": num(join / 1000, ".2f"),
        "join_trips": len(JOIN_TRIPS),
        "join_trips_ms": num(len(JOIN_TRIPS) * trip / 1000, ".2f"),
        "user_ms": num(us["user"] / 1000, ".2f"),
        "own_ms": num(own / 1000, ".2f"),
        "measured_join_ms": num(per_join, ".2f"),
        "joined_in": joined_in,
        "target_ms": JOIN_TARGET_MS,
        # The same joins on a server whose own calls return at once (probe.FLOOR).
        "floor_rounds": len(floors or []),
        "floor_ms": spread(
            {"median": floor, "min": min(floors), "max": max(floors)}, ".2f"
        )
        if floors
        else "—",
        "floor_trips_ms": num(stub_trips, ".2f"),
        "floor_without_trips_ms": num(floor - stub_trips, ".2f") if floor else "—",
        "floor_case": floor_case([f - stub_trips for f in floors]) if floors else None,
        "step_ms": num(per_join - floor, ".2f") if per_join and floor else "—",
        "presence_ms": num(per_join - floor - (own / 1000 - stub_trips), ".2f")
        if per_join and floor
        else "—",
        "message_us": num(message, ",.0f"),
        # The same three in a batch of BATCH messages, per message.
        "batch": BATCH,
        "batch_message_us": num(
            (us["rate_limit_batch"] + us["store_batch"]) / BATCH + us["broadcast"],
            ",.0f",
        )
        if "store_batch" in us
        else None,
        "small": small,
        "small_others": small - 1,
        "small_message_us": num(per_message, ",.0f"),
        "message_share": f"{message / per_message:.0%}" if per_message else "—",
        # Whether a message in the room of `small` meets its target as it is.
        "small_met": bool(per_delivery and base)
        and per_delivery / base <= SMALL_CPU_TARGET,
        **message_floor(run, small, trip),
    }
