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

from workshop.bench.load import OPEN_BATCH
from workshop.steps import ROOT

TEMPLATE = Path(__file__).with_name("performance.md.template")
NOTES = ROOT / "notes"
BASELINE = "baseline"
# The last step's targets, judged on the medians.
CPU_TARGET = 8  # × the baseline's CPU per delivery, in the largest room
SMALL_CPU_TARGET = 30  # × the baseline's CPU per delivery, in the smallest room
MEMORY_TARGET = 3  # × the baseline's RSS per idle connection, in the largest room
JOIN_TARGET_MS = 2  # server CPU per joining socket, in the largest room
STORM_TARGET_S = 10  # from the kill until every client has caught up
# The tutorial's asynchronous rewrite of its consumer: deliveries/s against the
# synchronous one's.
ASYNC_TARGET = 2
# Whether each part of an idle connection's memory could be done without.
CAN_CUT = {
    "uvicorn": "no: the connection itself (protocol, buffers, handshake headers)",
    "websockets": "no: the connection itself (the WebSocket protocol's state)",
    "event loop": "no: the connection itself (transport, socket)",
    "channels": "no: a consumer instance, its scope, and its dispatch loop's tasks,"
    " for each socket: how Channels works",
    "channels_redis": "not with this layer: a queue and a subscription for each consumer",
    "redis": "not with this layer: its connections to Redis",
    "django": "partly: the session and user objects that `AuthMiddlewareStack` keeps in"
    " each scope",
    "asgiref": "no: Channels' wrappers around each consumer",
}


# --- formatting ---------------------------------------------------------------------


def num(value, spec=",.0f", missing="—") -> str:
    return missing if value is None else format(value, spec)


def spread(s: dict | None, spec=",.0f", missing="—") -> str:
    """'median (least–greatest)', or the median alone when every run agreed."""
    if not s or (s["median"] is None and s["max"] is None):
        return missing
    low, middle, high = (num(s[k], spec, missing) for k in ("min", "median", "max"))
    return middle if low == high else f"{middle} ({low}–{high})"


def times(value, spec=".1f") -> str:
    return "—" if value is None else f"{value:{spec}}×"


def percent(value, spec=".0%") -> str:
    return num(value, spec)


def delivered(s: dict) -> str:
    ratio = s["delivery_ratio"]
    return percent(ratio["min"], ".1%") + (
        "" if ratio["min"] == ratio["max"] else " at least"
    )


def ratio_cell(vs: dict | None, metric: str, spec=".1f") -> str:
    """The ratio of the medians, and the range of the round-by-round ratios."""
    if vs is None:
        return "1×"
    found = vs.get(metric) or {}
    text = times(found.get("of_medians"), spec)
    paired = found.get("paired")
    if paired and paired["runs"] > 1 and paired["min"] != paired["max"]:
        text += f" ({paired['min']:{spec}}–{paired['max']:{spec}}×)"
    return text


def median(values: list):
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return (
        ordered[middle]
        if len(ordered) % 2
        else (ordered[middle - 1] + ordered[middle]) / 2
    )


# --- finding things in the run ------------------------------------------------------


class Run:
    def __init__(self, data: dict):
        self.data = data
        self.plan = data["plan"]
        self.variants = {v["key"]: v for v in data["variants"]}
        self.summary = data["summary"]
        self.default = next((v for v in data["variants"] if v["default"]), None)
        last = data["last_step"]["number"]
        self.layers = [v for v in data["variants"] if v["step"] == last]

    def name(self, key: str) -> str:
        return self.variants[key]["name"] if key in self.variants else key

    def group(self, scenario: str, key: str | None, clients: int | None = None):
        for s in self.summary:
            if (
                s["scenario"] == scenario
                and s["variant"] == key
                and (clients is None or s["clients"] == clients)
            ):
                return s
        return None

    def median(self, scenario, key, clients, metric):
        group = self.group(scenario, key, clients)
        return group[metric]["median"] if group and group.get(metric) else None

    def runs(self, key: str, scenario: str | None = None) -> list[dict]:
        return [
            r
            for r in self.data["runs"]
            if r["variant"] == key and (scenario is None or r["scenario"] == scenario)
        ]

    @property
    def big(self) -> int | None:
        return max(self.plan["sizes"], default=None)


# --- the tables -----------------------------------------------------------------------


def room_rows(run: Run, scenario: str) -> list[dict]:
    rows = []
    for s in run.summary:
        if s["scenario"] != scenario:
            continue
        vs = s.get("vs_baseline")
        rows.append(
            {
                "variant": run.name(s["variant"]),
                "clients": s["clients"],
                "deliveries": spread(s["deliveries_per_second"]),
                "throughput_ratio": ratio_cell(vs, "deliveries_per_second", ".2f"),
                "p50": spread(s["p50_ms"], ",.0f", "never"),
                "p99": spread(s["p99_ms"], ",.0f", "never"),
                "delivered": delivered(s),
                "cpu": spread(s["cpu_us_per_delivery"]),
                "cpu_ratio": ratio_cell(vs, "cpu_us_per_delivery"),
                "rss": spread(s["rss_kib_per_idle_connection"]),
                "client": percent(s["client_cpu_share"]["median"]),
                "failed": "; ".join(s["failed"]),
            }
        )
    return sorted(rows, key=lambda r: r["clients"])


def steady_rows(run: Run) -> list[dict]:
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


def capacity(run: Run) -> list[dict]:
    """What one core could deliver at each variant's CPU per delivery: above or below
    the fixed load? (From the peak-throughput runs in a room of the same size.)"""
    steady = run.plan.get("steady")
    found = []
    for s in run.summary:
        if s["scenario"] != "steady":
            continue
        cpu = run.median(
            "throughput", s["variant"], steady["clients"], "cpu_us_per_delivery"
        )
        if cpu:
            found.append(
                {
                    "variant": run.name(s["variant"]),
                    "cpu": num(cpu),
                    "most": num(1e6 / cpu),
                    "enough": 1e6 / cpu >= steady["rate"] * (steady["clients"] - 1),
                }
            )
    return found


def storm_figures(run: Run, cpu: dict | None) -> dict | None:
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
    }


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
                        "measured": f"{times(cpu['of_medians'])}"
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
                    "measured": f"{times(memory['of_medians'])}"
                    f" ({group['rss_kib_per_idle_connection']['median']:.0f} KiB against"
                    f" {base:.0f} KiB; round by round"
                    f" {spread(memory['paired'], '.1f')}×)",
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


def cpu_breakdown(run: Run) -> dict | None:
    cpu = run.data["breakdowns"].get("cpu")
    if not cpu:
        return None
    clients = cpu["clients"]
    per_delivery = run.median(
        "throughput", cpu["variant"], clients, "cpu_us_per_delivery"
    )
    base = run.median("throughput", BASELINE, clients, "cpu_us_per_delivery")
    messages, joining = cpu["messages"], cpu["joining"]
    per_join = joining["cpu_ms_per_connection"]

    def table(entries, per, spec):
        return [
            {
                "what": e["what"],
                "share": percent(e["share"]),
                "per": num(e["share"] * per, spec),
            }
            for e in entries
            if e["share"] >= 0.005
        ]

    shares = {e["what"]: e["share"] for e in messages["components"]}
    functions = {e["what"]: e["share"] for e in messages["functions"]}
    step = run.data["last_step"]["name"]
    session = sum(
        share
        for what, share in functions.items()
        if what.startswith(("django/utils/functional.py", "channels/sessions.py"))
    )
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


def memory_breakdown(run: Run) -> dict | None:
    memory = run.data["breakdowns"].get("memory")
    if not memory or not run.default or run.default["key"] not in memory:
        return None
    key, big = run.default["key"], run.big
    total = run.median("throughput", key, big, "rss_kib_per_idle_connection")
    base_total = run.median("throughput", BASELINE, big, "rss_kib_per_idle_connection")
    one = run.data["breakdowns"].get("one_user", {}).get("rss_kib_per_idle_connection")

    def parts(variant):
        found = memory.get(variant)
        if not found:
            return None
        return {
            "traced": num(found["traced_kib_per_connection"], ".1f"),
            "traced_value": found["traced_kib_per_connection"],
            "connections": found["connections"],
            "components": [
                {
                    "what": e["what"],
                    "kib": num(e["amount"], ".1f"),
                    "cut": CAN_CUT.get(e["what"], "the step's own state"),
                }
                for e in found["components"]
                if e["amount"] >= 0.05
            ],
            "sites": [
                {"what": e["what"], "kib": num(e["amount"], ".1f")}
                for e in found["sites"]
                if e["amount"] >= 0.05
            ],
        }

    last = parts(key)
    return {
        "total": num(total),
        "base_total": num(base_total),
        "one_user": num(one),
        "presence": num(total - one if total is not None and one is not None else None),
        "untraced": num(one - last["traced_value"] if one else None, ".1f"),
        "last": last,
        "baseline": parts(BASELINE),
        "tutorial": parts("async-uvicorn"),
        "tutorial_name": run.name("async-uvicorn"),
    }


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


def slow_readers(run: Run) -> dict | None:
    plan = run.plan.get("slow_readers")
    groups = {
        s["configuration"]: s for s in run.summary if s["scenario"] == "slow_readers"
    }
    if not plan or not groups:
        return None
    rows = []
    reading = groups.get("reading")
    for configuration, meaning in (
        ("reading", "every page reads"),
        (
            "bounded",
            f"{plan['stalled']} stop reading; `CHANNEL_CAPACITY` {plan['capacity']}",
        ),
        ("unbounded", f"{plan['stalled']} stop reading; no bound"),
    ):
        s = groups.get(configuration)
        if not s:
            continue
        growth = s["rss_growth_mib"]["median"]
        base = reading["rss_growth_mib"]["median"] if reading else None
        rows.append(
            {
                "configuration": configuration,
                "meaning": meaning,
                "failed": "; ".join(s["failed"]),
                "rss": spread(s["rss_growth_mib"], ".1f"),
                "vs_reading": times(growth / base if growth and base else None),
                "tcp": spread(s["tcp_buffers_growth_mib"], ".1f"),
                "readers": delivered(s),
                "stalled_got": spread(s["stalled_delivery_ratio"], ".1%"),
                "stalled_skipped": spread(s["stalled_skipped_ratio"], ".1%"),
                "unaccounted": num(s["stalled_unaccounted"]["max"]),
                "caught_up": spread(s["stalled_caught_up_s"], ".1f"),
            }
        )
    return {**plan, "variant": run.name(run.default["key"]), "rows": rows}


def big_room(run: Run) -> dict | None:
    rows = [r for r in run.data["runs"] if r["scenario"] == "big_room"]
    if not rows:
        return None
    row = rows[0]
    if "error" in row:
        return {"clients": num(row["clients"]), "failed": row["error"]}
    return {
        "clients": num(row["clients"]),
        "variant": run.name(row["variant"]),
        "opened": num(row["opened"]),
        "refused": num(row["refused"]),
        "all_open": num(row["all_open_s"], ".1f"),
        "settled": num(row["settled_s"], ".1f"),
        "join_ms": num(row["cpu_ms_per_join"], ".2f"),
        "rss": num(row["rss_kib_per_idle_connection"]),
        "received": num(row["received"]),
        "expected": num(row["expected"]),
        "delivered": percent(row["delivery_ratio"], ".2%"),
        "median_ms": num(row["median_arrival_ms"]),
        "last_ms": num(row["last_arrival_ms"]),
        "join_at_big": num(
            run.median("throughput", row["variant"], run.big, "cpu_ms_per_join"), ".2f"
        )
        if run.big
        else None,
    }


# --- the note -------------------------------------------------------------------------


def context(data: dict) -> dict:
    run = Run(data)
    machine, plan, last = data["machine"], data["plan"], data["last_step"]
    placement = data["placement"]
    found = targets(run)
    main_targets = [t for t in found if not t.get("tutorial")]
    steady, storm = plan.get("steady"), plan.get("storm")
    cpu = cpu_breakdown(run)
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
        "steady": steady,
        "steady_offered": num(steady["rate"] * (steady["clients"] - 1))
        if steady
        else None,
        "steady_per_sender": num(steady["rate"] / steady["senders"], "g")
        if steady
        else None,
        "storm": storm,
        "last": last,
        "last_flags": " ".join(last["uvicorn_flags"]) or "none",
        "layers": ", ".join(f"`{layer}`" for layer in last["settings"]["REDIS_LAYERS"]),
        "backoff": last["backoff"],
        "default_name": run.default["name"] if run.default else None,
        "variants": [v["name"] for v in data["variants"]],
        "throughput": room_rows(run, "throughput"),
        "burst": room_rows(run, "burst"),
        "steady_rows": steady_rows(run),
        "capacity": capacity(run) if steady else [],
        "storm_figures": storm_figures(run, cpu),
        "big_room": big_room(run),
        "slow_readers": slow_readers(run),
        "targets": found,
        "met": sum(1 for t in main_targets if t["met"]),
        "targets_count": len(main_targets),
        "cpu_missed": any(not t["met"] and "CPU" in t["target"] for t in main_targets),
        "cpu": cpu,
        "memory": memory_breakdown(run),
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
