"""The reconnect storm, measured: the app server of a full room is killed and
started again while messages keep coming through another one (storm_clients.py has
the clients). How soon is everyone back and caught up, was anything lost, and what
did the restarted server spend on it?"""

import asyncio
import json
import random
import time

from workshop.bench.figures import Run, median, num, percent, spread
from workshop.bench.harness import Bench, manage_shell
from workshop.bench.server import Idle, Server, cpu_seconds
from workshop.bench.storm_clients import Backoff, run_storm
from workshop.bench.variants import Variant

# The numbers of the messages the database stored in a room.
STORED = """
import json
from chat.models import Message
numbers = Message.objects.filter(room__name=ROOM).values_list("number", flat=True)
print(json.dumps(list(numbers)))
"""


def measure(bench: Bench, variant: Variant, round_: int, backoff: Backoff) -> None:
    plan = bench.plan.storm
    row = {
        "variant": variant.key,
        "scenario": "storm",
        "round": round_,
        "clients": plan.listeners,
        "senders": plan.senders,
        "rate": plan.rate,
    }

    def run():
        env = bench.env_for(variant)
        room = f"storm{round_}"
        servers = {"listeners": Server(bench, variant, env).start()}
        try:
            servers["senders"] = Server(bench, variant, env).start()
            port = servers["listeners"].port

            def restart():
                servers["listeners"].kill()
                servers["listeners"] = Server(bench, variant, env, port=port).start()
                return {
                    "at": time.monotonic(),
                    "cpu": cpu_seconds(servers["listeners"].pid),
                }

            figures, listeners = asyncio.run(
                run_storm(
                    servers["listeners"].url(room),
                    servers["senders"].url(room),
                    servers["listeners"].origin,
                    bench.cookies_for(variant, plan.listeners),
                    bench.cookies_for(variant, plan.senders, offset=plan.listeners),
                    plan.rate,
                    plan.warmup,
                    plan.limit,
                    backoff,
                    restart,
                    lambda: cpu_seconds(servers["listeners"].pid),
                    Idle(servers["listeners"].pid),
                )
            )
        finally:
            for server in servers.values():
                server.kill()
        stored = set(
            json.loads(
                manage_shell(variant.step.path, env, STORED.replace("ROOM", repr(room)))
            )
        )
        missing = [len(stored - listener.arrivals) for listener in listeners]
        return {
            **figures,
            "stored": len(stored),
            "lost": sum(missing),
            "listeners_with_loss": sum(1 for n in missing if n),
        }

    bench.attempt(row, run)


# --- in the note ---------------------------------------------------------------------


def backoff_floor(backoff: dict, up_s: float, clients: int, storms=200) -> dict:
    """When the last of `clients` would be back if the server cost nothing: each
    client tries as the page does (backoff: Backoff.describe()), every attempt before
    the server listens again (up_s after the kill) is refused, the first after it
    succeeds at once. Simulated `storms` times, with the same seed every report."""
    chance, lasts = random.Random(17), []
    low, high = backoff["jitter"]
    for _ in range(storms):
        last = 0.0
        for _ in range(clients):
            at, retries = 0.0, 0
            while at < up_s:
                wait = min(backoff["first_s"] * 2**retries, backoff["cap_s"])
                at += wait * chance.uniform(low, high)
                retries += 1
            last = max(last, at)
        lasts.append(last)
    return {"median": median(lasts), "min": min(lasts), "max": max(lasts)}


def figures(run: Run, cpu: dict | None) -> dict | None:
    s = run.group("storm", run.default["key"]) if run.default else None
    if not s:
        return None
    runs = [r for r in run.runs(run.default["key"], "storm") if "error" not in r]
    stored = [r["stored"] for r in runs]
    listeners = run.plan["storm"]["listeners"]
    joining = run.data["breakdowns"].get("cpu", {}).get("joining", {})
    per_join = joining.get("cpu_ms_per_connection")
    return {
        "runs": len(runs),
        "failed": "; ".join(s["failed"]),
        "server_up": spread(s["server_up_s"], ".1f"),
        "reconnected": spread(s["all_reconnected_s"], ".1f", "not all"),
        "median_caught_up": spread(s["median_caught_up_s"], ".1f"),
        "caught_up": spread(s["all_caught_up_s"], ".1f", "not all"),
        "lost": spread(s["lost"]),
        "stored": spread(
            {
                "median": median(stored),
                "min": min(stored, default=None),
                "max": max(stored, default=None),
            }
        ),
        "cpu": spread(s["storm_cpu_s"], ".1f"),
        "cpu_share": spread(s["storm_cpu_share"], ".0%"),
        "failed_attempts": spread(s["failed_attempts"]),
        "client": percent(s["client_cpu_share"]["median"]),
        "startup_cpu": num(median([r["server_startup_cpu_s"] for r in runs]), ".1f"),
        "fill": num(median([r["fill_s"] for r in runs]), ".1f"),
        "join_ms": num(per_join, ".1f") if cpu else None,
        "join_total": num(per_join * listeners / 1000, ".1f") if per_join else None,
        "backoff_floor": spread(
            backoff_floor(
                run.data["last_step"]["backoff"],
                s["server_up_s"]["median"],
                listeners,
            ),
            ".1f",
        ),
    }
