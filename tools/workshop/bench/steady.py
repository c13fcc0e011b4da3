"""A steady offered load: a full room where a few members send at a fixed rate,
within the chat's rate limit, for a few seconds. Is every message delivered, how
fast, and at what share of a core?"""

import asyncio

from workshop.bench.figures import Run, delivered, percent, spread
from workshop.bench.harness import Bench
from workshop.bench.load import run_steady
from workshop.bench.saturation import room_figures
from workshop.bench.server import CpuWatch, Idle, Server
from workshop.bench.variants import Variant


def measure(bench: Bench, variant: Variant, round_: int) -> None:
    plan = bench.plan.steady
    row = {
        "variant": variant.key,
        "scenario": "steady",
        "round": round_,
        "clients": plan.clients,
        "senders": plan.senders,
        "rate": plan.rate,
        "offered_deliveries_per_second": plan.rate * (plan.clients - 1),
    }

    def run():
        # The default rate limit stays: each sender sends rate / senders a second.
        env = bench.env_for(variant)
        with Server(bench, variant, env) as server:
            watch = CpuWatch(server.pid)
            result = asyncio.run(
                run_steady(
                    server.url(f"steady{round_}"),
                    plan.clients,
                    plan.senders,
                    plan.rate,
                    plan.seconds,
                    variant.protocol,
                    server.origin,
                    bench.cookies_for(variant, plan.clients),
                    plan.drain,
                    on_ready=watch.start,
                    on_done=watch.stop,
                    idle=Idle(server.pid),
                    quiet_after=bench.quiet_after(variant),
                )
            )
        return {**room_figures(result, watch), "expected": result.expected}

    bench.attempt(row, run)


# --- in the note ---------------------------------------------------------------------


def rows(run: Run) -> list[dict]:
    return [
        {
            "variant": run.name(s["variant"]),
            "sustained": spread(s["deliveries_per_second"]),
            "p50": spread(s["p50_ms"], ",.0f", "never"),
            "p99": spread(s["p99_ms"], ",.0f", "never"),
            "delivered": delivered(s),
            "server": percent(s["server_cpu_share"]["median"]),
            "client": percent(s["client_cpu_share"]["median"]),
            "failed": "; ".join(s["failed"]),
        }
        for s in run.summary
        if s["scenario"] == "steady"
    ]
