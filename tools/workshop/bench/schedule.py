"""What is measured in what order. Every figure is measured in several rounds, each
time on a fresh server; within a round the baseline goes first in each group and the
variants follow it, so that a machine that drifts during the run moves both."""

import time

from workshop.bench import (
    big_room,
    calls,
    cpu_breakdown,
    memory_breakdown,
    saturation,
    slow_readers,
    steady,
    storm,
)
from workshop.bench.harness import Bench
from workshop.bench.plan import (
    BASELINE_MESSAGES,
    BURST_CLIENTS,
    BURST_MESSAGES,
    BURST_SENDERS,
)
from workshop.bench.storm_clients import page_backoff
from workshop.bench.variants import BASELINE, CHAT, Variant

# The tutorial's asynchronous consumer under uvicorn: the steady load and the
# memory breakdown set it beside the baseline and the last step.
TUTORIAL_ASYNC = "async-uvicorn"


def schedule(bench: Bench, variants: list[Variant], scenarios) -> None:
    plan = bench.plan
    by_key = {v.key: v for v in variants}
    default = next((v for v in variants if v.default), None)
    compared = [
        by_key[key]
        for key in (BASELINE, TUTORIAL_ASYNC, default.key if default else None)
        if key in by_key
    ]
    backoff = (
        page_backoff(default.step.path / "chat/templates/chat/room.html")
        if default
        else None
    )
    for round_ in range(1, plan.rounds + 1):
        print(f"\n--- round {round_} of {plan.rounds}", flush=True)
        if "throughput" in scenarios:
            for size in sorted({*plan.sizes, *plan.tutorial_sizes}):
                for variant in variants:
                    sizes = (
                        plan.sizes
                        if variant.key == BASELINE or variant.protocol == CHAT
                        else plan.tutorial_sizes
                    )
                    if size in sizes:
                        saturation.measure(
                            bench,
                            variant,
                            "throughput",
                            size,
                            min(plan.senders, size),
                            plan.per_sender(size)
                            * (BASELINE_MESSAGES if variant.key == BASELINE else 1),
                            round_,
                        )
            if plan.breakdowns and default and plan.sizes:
                # Joining the largest room with the step's own database calls
                # taken out, in the same round as the real joins it is set beside.
                calls.measure_floor(bench, default, max(plan.sizes))
                floor = bench.breakdowns["join_floor"]["cpu_ms_per_join"][-1]
                print(
                    f"  {default.key:<41} join floor N={max(plan.sizes):<6}"
                    f" CPU {floor:.2f} ms per join",
                    flush=True,
                )
                # A message in the smallest room, with the step's own calls of a
                # message taken out, beside the baseline's of the same round.
                small = min(plan.sizes)
                calls.measure_message_floor(
                    bench,
                    default,
                    small,
                    min(plan.senders, small),
                    plan.per_sender(small),
                    round_,
                )
                rounds = bench.breakdowns["message_floor"].get("rounds", [])
                if rounds and rounds[-1]["round"] == round_:
                    print(
                        f"  {default.key:<41} message floor N={small:<4}"
                        f" CPU {rounds[-1]['cpu_us_per_delivery']:.0f} µs per delivery",
                        flush=True,
                    )
        if "burst" in scenarios and plan.burst:
            for variant in variants:
                saturation.measure(
                    bench,
                    variant,
                    "burst",
                    BURST_CLIENTS,
                    BURST_SENDERS,
                    BURST_MESSAGES,
                    round_,
                )
        if "steady" in scenarios and plan.steady:
            for variant in compared:
                steady.measure(bench, variant, round_)
        if "storm" in scenarios and plan.storm and default:
            storm.measure(bench, default, round_, backoff)
        if "slow_readers" in scenarios and plan.slow_readers and default:
            slow_readers.measure(bench, default, round_)
    if "big_room" in scenarios and plan.big_room and default:
        print(f"\n--- one room of {plan.big_room:,}", flush=True)
        big_room.measure(bench, default, plan.big_room)
    if "breakdown" in scenarios and plan.breakdowns:
        print("\n--- breakdowns", flush=True)
        jobs = [
            ("memory breakdown", memory_breakdown.measure, variant, plan.memory_clients)
            for variant in compared
        ]
        if default:
            jobs.append(
                (
                    "one user rss",
                    memory_breakdown.measure_one_user,
                    default,
                    plan.profile_clients,
                )
            )
            jobs.append(
                ("cpu breakdown", cpu_breakdown.measure, default, plan.profile_clients)
            )
            jobs.append(
                (
                    "cpu breakdown without the step's own calls",
                    cpu_breakdown.measure_floor,
                    default,
                    plan.profile_clients,
                )
            )
            if plan.sizes:
                # Where a message's CPU goes in the smallest room, where each
                # message is shared by few deliveries.
                jobs.append(
                    (
                        "cpu breakdown",
                        cpu_breakdown.measure_small,
                        default,
                        min(plan.sizes),
                    )
                )
        for label, measure, variant, clients in jobs:
            started = time.monotonic()
            measure(bench, variant, clients)
            print(
                f"  {time.monotonic() - started:>4.0f} s {variant.key:<20}"
                f" {label} N={clients}",
                flush=True,
            )
    if "breakdown" in scenarios and default:
        # Every call a join or a message makes, alone; in the smoke run once, so
        # that CI finds a call of the step's that the measurement no longer knows.
        started = time.monotonic()
        rounds = plan.rounds if plan.breakdowns else 1
        calls.measure(bench, default, rounds, max(plan.sizes, default=100))
        print(
            f"  {time.monotonic() - started:>4.0f} s {default.key:<20}"
            f" each call, {rounds} round(s)",
            flush=True,
        )
