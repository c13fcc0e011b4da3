"""Write notes/performance.md and its chart from a benchmark run's JSON.

python -m workshop.bench.report [BENCH_JSON] [--notes FOLDER]

The note is performance.md.template filled in with what this module computes from
the JSON alone: every figure, ratio and fact about the machine comes from the run.
The targets are judged here, on the medians.
"""

import argparse
import json
import re
from pathlib import Path

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
from workshop.bench.figures import (
    ASYNC_TARGET,
    CPU_TARGET,
    JOIN_TARGET_MS,
    MEMORY_TARGET,
    SMALL_CPU_TARGET,
    STORM_TARGET_S,
    Run,
    num,
    percent,
    ratio_cell,
    spread,
    times,
)
from workshop.bench.load import OPEN_BATCH
from workshop.bench.variants import BASELINE
from workshop.steps import ROOT

TEMPLATE = Path(__file__).with_name("performance.md.template")
NOTES = ROOT / "notes"


# --- the targets --------------------------------------------------------------------


def targets(run: Run) -> list[dict]:
    """The last step's targets, judged on the medians; then the tutorial's claim."""
    found = []
    big = run.big
    if run.default:
        key = run.default["key"]
        counted = [
            r
            for r in run.runs(key)
            if r["scenario"] in ("throughput", "burst", "steady") and "error" not in r
        ]
        failed = [r for r in run.runs(key) if "error" in r]
        worst = min(counted, key=lambda r: r["delivery_ratio"], default=None)
        storms = [r for r in run.runs(key, "storm") if "error" not in r]
        lost = sum(r["lost"] for r in storms)
        measured = (
            f"lowest {worst['delivery_ratio']:.1%} in {len(counted)} runs"
            f" ({worst['scenario']}, N = {worst['clients']})"
            if worst
            else "no run"
        )
        if storms:
            measured += f"; {lost} lost in {len(storms)} storms"
        if failed:
            measured += f"; {len(failed)} runs failed"
        found.append(
            {
                "target": "100 % delivered in every run",
                "met": bool(worst)
                and worst["delivery_ratio"] >= 1
                and not lost
                and not failed,
                "measured": measured,
            }
        )
        small = min(run.plan["sizes"], default=None)
        for size, target in ((small, SMALL_CPU_TARGET), (big, CPU_TARGET)):
            group = run.group("throughput", key, size) or {}
            cpu = group.get("vs_baseline", {}).get("cpu_us_per_delivery", {})
            if cpu.get("of_medians"):
                base = run.median("throughput", BASELINE, size, "cpu_us_per_delivery")
                found.append(
                    {
                        "target": f"server CPU per delivery at N = {size} at most"
                        f" {target}× the baseline's",
                        "met": cpu["of_medians"] <= target,
                        "measured": f"{times(cpu['of_medians'], close_to(cpu['of_medians'], target))}"
                        f" ({group['cpu_us_per_delivery']['median']:.0f} µs against"
                        f" {base:.0f} µs; round by round"
                        f" {spread(cpu['paired'], '.1f')}×)",
                    }
                )
        group = run.group("throughput", key, big) or {}
        vs = group.get("vs_baseline", {})
        memory = vs.get("rss_kib_per_idle_connection", {})
        if memory.get("of_medians"):
            base = run.median(
                "throughput", BASELINE, big, "rss_kib_per_idle_connection"
            )
            within = memory["of_medians"] <= MEMORY_TARGET
            found.append(
                {
                    "target": f"memory per idle connection at N = {big} at most"
                    f" {MEMORY_TARGET}× the baseline's",
                    "met": within,
                    "measured": f"{times(memory['of_medians'], close_to(memory['of_medians'], MEMORY_TARGET))}"
                    f" ({group['rss_kib_per_idle_connection']['median']:.0f} KiB against"
                    f" {base:.0f} KiB; round by round"
                    f" {spread(memory['paired'], '.2f')}×)",
                }
            )
        join = group.get("cpu_ms_per_join")
        if join and join.get("median") is not None:
            found.append(
                {
                    "target": f"server CPU per joining socket at N = {big} at most"
                    f" {JOIN_TARGET_MS} ms",
                    "met": join["median"] <= JOIN_TARGET_MS,
                    "measured": f"{spread(join, '.2f')} ms, from the first handshake"
                    " until the room is quiet (presence included)",
                }
            )
        storm = run.group("storm", key)
        if storm:
            caught = storm["all_caught_up_s"]["median"]
            found.append(
                {
                    "target": f"the reconnect storm caught up within {STORM_TARGET_S} s",
                    "met": caught is not None and caught <= STORM_TARGET_S,
                    "measured": f"{spread(storm['all_caught_up_s'], '.1f', 'not all')} s"
                    " from the kill until the last client had caught up",
                }
            )
    for server in ("daphne", "uvicorn"):
        for size in run.plan["tutorial_sizes"]:
            sync = run.median(
                "throughput", f"sync-{server}", size, "deliveries_per_second"
            )
            fast = run.median(
                "throughput", f"async-{server}", size, "deliveries_per_second"
            )
            if sync and fast:
                found.append(
                    {
                        "target": f"the tutorial's async consumer at least {ASYNC_TARGET}× the"
                        f" sync one's deliveries/s at N = {size} ({server.capitalize()})",
                        "met": fast / sync >= ASYNC_TARGET,
                        "measured": f"{fast / sync:.2f}× ({fast:,.0f} against {sync:,.0f})",
                        "tutorial": True,
                    }
                )
    return found


# --- the breakdowns -------------------------------------------------------------------


# --- what the numbers teach -----------------------------------------------------------


def lessons(run: Run) -> dict:
    size = max(run.plan["tutorial_sizes"], default=None)
    big = run.big
    smallest = min(run.plan["sizes"], default=None)

    def cpu(key, clients, scenario="throughput"):
        return num(run.median(scenario, key, clients, "cpu_us_per_delivery"))

    def ratio(key, clients):
        group = run.group("throughput", key, clients)
        return ratio_cell(
            group.get("vs_baseline") if group else {}, "cpu_us_per_delivery"
        )

    def burst(key):
        group = run.group("burst", key)
        return percent(group["delivery_ratio"]["median"], ".1%") if group else "—"

    burst_size = (run.plan.get("burst") or {}).get("clients")
    layers = {v["layer"]: v["key"] for v in run.layers}
    default_layer = run.default["layer"] if run.default else None
    other = next((layer for layer in layers if layer != default_layer), None)
    last = run.default["key"] if run.default else None
    return {
        "size": size,
        "big": big,
        "smallest": smallest,
        "burst_size": burst_size,
        "base": cpu(BASELINE, size),
        "async": cpu("async-uvicorn", size),
        "async_ratio": ratio("async-uvicorn", size),
        "sync": cpu("sync-uvicorn", size),
        "redis": cpu("async-uvicorn-redis", size),
        "async_burst": cpu("async-uvicorn", burst_size, "burst"),
        "redis_burst": cpu("async-uvicorn-redis", burst_size, "burst"),
        "burst_async_uvicorn": burst("async-uvicorn"),
        "burst_async_daphne": burst("async-daphne"),
        "burst_baseline": burst(BASELINE),
        "burst_last": burst(last),
        "last_small": cpu(last, smallest),
        # What one message costs the server, all its deliveries together.
        "last_small_message_ms": num(
            (run.median("throughput", last, smallest, "cpu_us_per_delivery") or 0)
            * (smallest - 1)
            / 1e3,
            ".2f",
        )
        if smallest
        else "—",
        "baseline_small": cpu(BASELINE, smallest),
        "small_budget_ms": num(
            (run.median("throughput", BASELINE, smallest, "cpu_us_per_delivery") or 0)
            * SMALL_CPU_TARGET
            * (smallest - 1)
            / 1e3,
            ".2f",
        )
        if smallest
        else "—",
        "last_big": cpu(last, big),
        "default_layer": default_layer,
        "other_layer": other,
        "other_big": cpu(layers[other], big) if other else "—",
        "other_ratio": ratio(layers[other], big) if other else "—",
    }


# --- the note -------------------------------------------------------------------------


def close_to(value: float, target: float) -> str:
    """Enough decimals that a ratio just over its target does not read as on it."""
    for spec in (".1f", ".2f", ".3f"):
        if (float(format(value, spec)) <= target) == (value <= target):
            return spec
    return ".4f"


def context(data: dict) -> dict:
    run = Run(data)
    machine, plan, last = data["machine"], data["plan"], data["last_step"]
    placement = data["placement"]
    found = targets(run)
    main_targets = [t for t in found if not t.get("tutorial")]
    steady_plan, storm_plan = plan.get("steady"), plan.get("storm")
    cpu = cpu_breakdown.report(run)
    biggest = max(plan["sizes"]) if plan["sizes"] else None
    return {
        "seconds": num(data["seconds"], ".0f"),
        "rounds": plan["rounds"],
        "machine": machine,
        "packages": ", ".join(f"{n} {v}" for n, v in machine["packages"].items()),
        "placement": placement,
        "server_cores": ", ".join(map(str, placement.get("server", []))),
        "client_cores": ", ".join(map(str, placement.get("client", []))),
        "plan": plan,
        "sizes": ", ".join(map(str, plan["sizes"])),
        "tutorial_sizes": ", ".join(map(str, plan["tutorial_sizes"])),
        "deliveries": num(plan["deliveries"]),
        "baseline_messages": plan.get("baseline_messages", 1),
        "rate_limit_lifted": ", ".join(
            f"{k}={v}" for k, v in plan["rate_limit_lifted"].items()
        ),
        "steady": steady_plan,
        "steady_offered": num(steady_plan["rate"] * (steady_plan["clients"] - 1))
        if steady_plan
        else None,
        "steady_per_sender": num(steady_plan["rate"] / steady_plan["senders"], "g")
        if steady_plan
        else None,
        "storm": storm_plan,
        "last": last,
        "last_flags": " ".join(last["uvicorn_flags"]) or "none",
        "layers": ", ".join(f"`{layer}`" for layer in last["settings"]["REDIS_LAYERS"]),
        "backoff": last["backoff"],
        "default_name": run.default["name"] if run.default else None,
        "variants": [v["name"] for v in data["variants"]],
        "throughput": saturation.rows(run, "throughput"),
        "burst": saturation.rows(run, "burst"),
        "steady_rows": steady.rows(run),
        "capacity": saturation.capacity(run) if steady_plan else [],
        "storm_figures": storm.figures(run, cpu),
        "big_room": big_room.report(run),
        "slow_readers": slow_readers.report(run),
        "targets": found,
        "met": sum(1 for t in main_targets if t["met"]),
        "targets_count": len(main_targets),
        "cpu_missed": any(not t["met"] and "CPU" in t["target"] for t in main_targets),
        "cpu": cpu,
        "cpu_small": cpu_breakdown.report_small(run),
        "cpu_floor": cpu_breakdown.report_floor(run),
        "calls": calls.report(run, biggest, min(plan["sizes"])) if biggest else None,
        "memory": memory_breakdown.report(run),
        "lessons": lessons(run),
        "open_batch": OPEN_BATCH,
    }


def render(data: dict) -> str:
    from django.conf import settings

    if not settings.configured:
        settings.configure(USE_I18N=False, USE_TZ=False)
    from django.template import Context, Engine

    template = Engine(autoescape=False).from_string(
        TEMPLATE.read_text(encoding="utf-8")
    )
    text = template.render(Context(context(data), autoescape=False))
    # Tags on lines of their own leave blank lines behind: at most one in a row.
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def chart(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Run(data)
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for key in run.variants:
        points = sorted(
            (
                s
                for s in run.summary
                if s["scenario"] == "throughput" and s["variant"] == key
            ),
            key=lambda s: s["clients"],
        )
        if not points:
            continue
        sizes = [s["clients"] for s in points]
        for axis, metric in (
            (left, "deliveries_per_second"),
            (right, "cpu_us_per_delivery"),
        ):
            middle = [s[metric]["median"] for s in points]
            low = [m - s[metric]["min"] for m, s in zip(middle, points, strict=True)]
            high = [s[metric]["max"] - m for m, s in zip(middle, points, strict=True)]
            axis.errorbar(
                sizes,
                middle,
                yerr=[low, high],
                marker="o",
                capsize=3,
                label=run.name(key),
            )
    for axis, title, unit in (
        (left, "Deliveries per second (higher is better)", "deliveries/s"),
        (right, "Server CPU per delivery (lower is better)", "µs"),
    ):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("clients in the room (N)")
        axis.set_ylabel(unit)
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=7)
    figure.suptitle(
        "Medians of the rounds; each bar reaches the least and the greatest"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.bench.report")
    parser.add_argument(
        "json", nargs="?", default=str(NOTES / "performance" / "bench.json")
    )
    parser.add_argument("--notes", default=str(NOTES), help="the folder to write into")
    args = parser.parse_args(argv)
    data = json.loads(Path(args.json).read_text())
    notes = Path(args.notes)
    (notes / "performance").mkdir(parents=True, exist_ok=True)
    chart(data, notes / "performance" / "chart.png")
    (notes / "performance.md").write_text(render(data))
    print(f"Wrote {notes / 'performance.md'} and {notes / 'performance' / 'chart.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
