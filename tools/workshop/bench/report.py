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

from workshop.steps import ROOT

TEMPLATE = Path(__file__).with_name("performance.md.template")
NOTES = ROOT / "notes"
BASELINE = "baseline"
# The last step's targets (the "Performance you can trust" issue), on the medians.
CPU_TARGET = 8  # × the baseline's CPU per delivery, at the largest room
MEMORY_TARGET = 2  # × the baseline's RSS per idle connection, at the largest room
STORM_TARGET_S = 10  # from the kill until every client has caught up
# The tutorial's async rewrite (step 3's lesson): deliveries/s against the sync one's.
ASYNC_TARGET = 2
ASYNC_TARGET_SIZE = 100


# --- formatting ---------------------------------------------------------------------


def num(value, spec=",.0f", missing="—") -> str:
    return missing if value is None else format(value, spec)


def spread(s: dict | None, spec=",.0f", missing="—") -> str:
    """'median (least–greatest)', or the median alone when every run agreed."""
    if not s or s["median"] is None and s["max"] is None:
        return missing
    low, middle, high = (num(s[k], spec, missing) for k in ("min", "median", "max"))
    return middle if low == high else f"{middle} ({low}–{high})"


def times(value) -> str:
    return num(value, ".1f") + "×" if value is not None else "—"


def percent(value, spec=".0%") -> str:
    return num(value, spec)


# --- finding things in the run ------------------------------------------------------


class Run:
    def __init__(self, data: dict):
        self.data = data
        self.variants = {v["key"]: v for v in data["variants"]}
        self.summary = data["summary"]
        self.default = next((v for v in data["variants"] if v["default"]), None)
        self.layers = [v for v in data["variants"] if v["step"] == data["last_step"]["number"]]

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
        sizes = self.data["plan"]["sizes"]
        return max(sizes) if sizes else None


# --- the tables -----------------------------------------------------------------------


def room_rows(run: Run, scenario: str) -> list[dict]:
    rows = []
    for s in run.summary:
        if s["scenario"] != scenario:
            continue
        vs = s.get("vs_baseline", {})
        cpu_ratio = vs.get("cpu_us_per_delivery", {})
        rows.append(
            {
                "variant": run.name(s["variant"]),
                "clients": s["clients"],
                "runs": s["runs"] - len(s["failed"]),
                "deliveries": spread(s["deliveries_per_second"]),
                "throughput_ratio": times(vs.get("deliveries_per_second", {}).get("of_medians"))
                if vs
                else "1×",
                "p50": spread(s["p50_ms"], ",.0f", "never"),
                "p99": spread(s["p99_ms"], ",.0f", "never"),
                "delivered": percent(s["delivery_ratio"]["min"], ".1%")
                + ("" if s["delivery_ratio"]["min"] == s["delivery_ratio"]["max"] else " at least"),
                "cpu": spread(s["cpu_us_per_delivery"]),
                "cpu_ratio": (
                    times(cpu_ratio.get("of_medians"))
                    + (
                        f" ({spread(cpu_ratio['paired'], '.1f')}×)"
                        if cpu_ratio.get("paired") and cpu_ratio["paired"]["runs"] > 1
                        else ""
                    )
                )
                if vs
                else "1×",
                "rss": spread(s["rss_kib_per_idle_connection"]),
                "client": percent(s["client_cpu_share"]["median"]),
                "failed": "; ".join(s["failed"]),
            }
        )
    return sorted(rows, key=lambda r: r["clients"])


def steady_rows(run: Run) -> list[dict]:
    rows = []
    for s in run.summary:
        if s["scenario"] != "steady":
            continue
        runs = run.runs(s["variant"], "steady")
        offered = runs[0]["offered_deliveries_per_second"] if runs else None
        rows.append(
            {
                "variant": run.name(s["variant"]),
                "runs": s["runs"] - len(s["failed"]),
                "offered": num(offered),
                "sustained": spread(s["deliveries_per_second"]),
                "p50": spread(s["p50_ms"], ",.0f", "never"),
                "p99": spread(s["p99_ms"], ",.0f", "never"),
                "delivered": percent(s["delivery_ratio"]["min"], ".1%")
                + ("" if s["delivery_ratio"]["min"] == s["delivery_ratio"]["max"] else " at least"),
                "server": percent(s["server_cpu_share"]["median"]),
                "client": percent(s["client_cpu_share"]["median"]),
                "saturated": s["server_cpu_share"]["median"] is not None
                and s["server_cpu_share"]["median"] > 0.9,
                "failed": "; ".join(s["failed"]),
            }
        )
    return rows


def storm_figures(run: Run) -> dict | None:
    if not run.default:
        return None
    s = run.group("storm", run.default["key"])
    if not s:
        return None
    runs = [r for r in run.runs(run.default["key"], "storm") if "error" not in r]
    return {
        "runs": len(runs),
        "failed": "; ".join(s["failed"]),
        "server_up": spread(s["server_up_s"], ".1f"),
        "reconnected": spread(s["all_reconnected_s"], ".1f", "not all"),
        "median_caught_up": spread(s["median_caught_up_s"], ".1f"),
        "caught_up": spread(s["all_caught_up_s"], ".1f", "not all"),
        "lost": spread(s["lost"]),
        "stored": spread({k: v for k, v in _spread_of(runs, "stored").items()}),
        "cpu": spread(s["storm_cpu_s"], ".1f"),
        "cpu_share": spread(_scaled(s["storm_cpu_share"], 100), ".0f") + " %",
        "failed_attempts": spread(s["failed_attempts"]),
        "client": percent(s["client_cpu_share"]["median"]),
        "startup_cpu": num(
            _median([r["server_startup_cpu_s"] for r in runs]), ".1f"
        ),
    }


def _median(values: list):
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _spread_of(runs: list[dict], key: str) -> dict:
    values = [r[key] for r in runs if r.get(key) is not None]
    return {
        "median": _median(values),
        "min": min(values, default=None),
        "max": max(values, default=None),
    }


def _scaled(s: dict, factor: float) -> dict:
    return {k: (v * factor if isinstance(v, float | int) and k != "runs" else v) for k, v in s.items()}


# --- the targets --------------------------------------------------------------------


def targets(run: Run) -> list[dict]:
    """The last step's targets, judged on the medians; and the tutorial's claim."""
    found = []
    default, big = run.default, run.big
    if default:
        key = default["key"]
        delivered = [
            r
            for r in run.runs(key)
            if r["scenario"] in ("throughput", "burst", "steady") and "error" not in r
        ]
        failed = [r for r in run.runs(key) if "error" in r]
        worst = min(delivered, key=lambda r: r["delivery_ratio"], default=None)
        storms = [r for r in run.runs(key, "storm") if "error" not in r]
        lost = sum(r["lost"] for r in storms)
        found.append(
            {
                "target": "100 % delivered in every run",
                "met": bool(delivered) and not failed and worst["delivery_ratio"] >= 1 and not lost,
                "measured": (
                    f"lowest {worst['delivery_ratio']:.1%} over {len(delivered)} runs"
                    f" ({worst['scenario']}, N = {worst['clients']})"
                    if worst
                    else "no run"
                )
                + (f"; {lost} lost in the storms" if storms else "")
                + (f"; {len(failed)} runs failed" if failed else ""),
            }
        )
        cpu = run.group("throughput", key, big)
        ratio = cpu["vs_baseline"]["cpu_us_per_delivery"] if cpu and "vs_baseline" in cpu else {}
        if ratio.get("of_medians"):
            base = run.median("throughput", BASELINE, big, "cpu_us_per_delivery")
            found.append(
                {
                    "target": f"server CPU per delivery at N = {big} at most {CPU_TARGET}× the baseline",
                    "met": ratio["of_medians"] <= CPU_TARGET,
                    "measured": f"{ratio['of_medians']:.1f}× ({cpu['cpu_us_per_delivery']['median']:.0f}"
                    f" µs against {base:.0f} µs; round by round"
                    f" {spread(ratio['paired'], '.1f')}×)",
                }
            )
        memory = cpu["vs_baseline"]["rss_kib_per_idle_connection"] if cpu and "vs_baseline" in cpu else {}
        if memory.get("of_medians"):
            base = run.median("throughput", BASELINE, big, "rss_kib_per_idle_connection")
            found.append(
                {
                    "target": f"memory per idle connection at N = {big} at most {MEMORY_TARGET}×"
                    " the baseline, or a breakdown of where it goes",
                    "met": memory["of_medians"] <= MEMORY_TARGET,
                    "measured": f"{memory['of_medians']:.1f}×"
                    f" ({cpu['rss_kib_per_idle_connection']['median']:.0f} KiB against"
                    f" {base:.0f} KiB)"
                    + (
                        "; the breakdown is below"
                        if run.data["breakdowns"].get("memory")
                        else ""
                    ),
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
        sync = run.median("throughput", f"sync-{server}", ASYNC_TARGET_SIZE, "deliveries_per_second")
        fast = run.median("throughput", f"async-{server}", ASYNC_TARGET_SIZE, "deliveries_per_second")
        if sync and fast:
            found.append(
                {
                    "target": f"the tutorial's async consumer at least {ASYNC_TARGET}× the sync"
                    f" one's deliveries/s at N = {ASYNC_TARGET_SIZE} ({server.capitalize()})",
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
    big = cpu["clients"]
    per_delivery = run.median("throughput", cpu["variant"], big, "cpu_us_per_delivery")
    base = run.median("throughput", BASELINE, big, "cpu_us_per_delivery")

    def table(profile, per, unit_spec):
        return [
            {
                "what": entry["what"],
                "share": percent(entry["share"]),
                "per": num(entry["share"] * per, unit_spec) if per else "—",
            }
            for entry in profile
            if entry["share"] >= 0.005
        ]

    messages, joining = cpu["messages"], cpu["joining"]
    shares = {e["what"]: e["share"] for e in messages["components"]}
    functions = {e["what"]: e["share"] for e in messages["functions"]}

    def share_of(prefix):
        return sum(v for k, v in functions.items() if k.startswith(prefix))

    return {
        "variant": run.name(cpu["variant"]),
        "clients": big,
        "per_delivery": num(per_delivery),
        "baseline": num(base),
        "budget": num(base * CPU_TARGET if base else None),
        "samples": num(messages["samples"]),
        "join_samples": num(joining["samples"]),
        "components": table(messages["components"], per_delivery, ".1f"),
        "functions": table(messages["functions"], per_delivery, ".1f"),
        "join_components": table(joining["components"], joining["cpu_ms_per_connection"], ".2f"),
        "join_functions": table(joining["functions"][:10], joining["cpu_ms_per_connection"], ".2f"),
        "join_ms": num(joining["cpu_ms_per_connection"], ".1f"),
        "channels_share": percent(shares.get("channels", 0)),
        "channels_us": num(shares.get("channels", 0) * per_delivery, ".0f") if per_delivery else "—",
        "dispatch_share": percent(functions.get("channels/utils.py:await_many_dispatch", 0)),
        "session_share": percent(share_of("django/utils/functional.py") + share_of("channels/sessions.py")),
        "layer_share": percent(shares.get("channels_redis", 0)),
        "server_share": percent(shares.get("uvicorn", 0) + shares.get("websockets", 0)),
        "step_share": percent(sum(v for k, v in shares.items() if k.startswith(run.data["last_step"]["name"]))),
        "without_channels": num(per_delivery * (1 - shares.get("channels", 0)) / base, ".1f")
        if per_delivery and base
        else "—",
    }


def memory_breakdown(run: Run) -> dict | None:
    memory = run.data["breakdowns"].get("memory")
    if not memory or not run.default:
        return None
    big = run.big
    key = run.default["key"]
    total = run.median("throughput", key, big, "rss_kib_per_idle_connection")
    base_total = run.median("throughput", BASELINE, big, "rss_kib_per_idle_connection")
    one_user = run.data["breakdowns"].get("one_user", {})
    one = one_user.get("rss_kib_per_idle_connection")

    def parts(key):
        found = memory.get(key)
        if not found:
            return None
        return {
            "traced": num(found["traced_kib_per_connection"], ".1f"),
            "traced_value": found["traced_kib_per_connection"],
            "connections": found["connections"],
            "components": [
                {"what": e["what"], "kib": num(e["amount"], ".1f"), "value": e["amount"]}
                for e in found["components"]
                if e["amount"] >= 0.05
            ],
            "sites": [
                {"what": e["what"], "kib": num(e["amount"], ".1f")}
                for e in found["sites"]
                if e["amount"] >= 0.05
            ],
        }

    last, base = parts(key), parts(BASELINE)
    tutorial = parts("async-uvicorn")
    return {
        "total": num(total),
        "base_total": num(base_total),
        "one_user": num(one),
        "presence": num(total - one if total is not None and one is not None else None),
        "users": one_user.get("clients"),
        "untraced": num(one - last["traced_value"] if one and last else None, ".1f"),
        "base_untraced": num(base_total - base["traced_value"] if base_total and base else None, ".1f"),
        "last": last,
        "baseline": base,
        "tutorial": tutorial,
        "tutorial_name": run.name("async-uvicorn"),
    }


# --- what the numbers teach -----------------------------------------------------------


def lessons(run: Run) -> dict:
    big = run.big
    sizes = run.data["plan"]["tutorial_sizes"]
    small, middle = (min(sizes), max(sizes)) if sizes else (None, None)

    def cpu(key, clients):
        return num(run.median("throughput", key, clients, "cpu_us_per_delivery"))

    def ratio(key, clients):
        group = run.group("throughput", key, clients)
        if not group or "vs_baseline" not in group:
            return "—"
        return times(group["vs_baseline"]["cpu_us_per_delivery"]["of_medians"])

    def burst(key):
        group = run.group("burst", key)
        return percent(group["delivery_ratio"]["median"], ".1%") if group else "—"

    layers = {v["layer"]: v["key"] for v in run.layers}
    default_layer = run.default["layer"] if run.default else None
    other = next((layer for layer in layers if layer != default_layer), None)
    return {
        "small": small,
        "middle": middle,
        "big": big,
        "base_big": cpu(BASELINE, big),
        "base_middle": cpu(BASELINE, middle),
        "async_middle": cpu("async-uvicorn", middle),
        "async_middle_ratio": ratio("async-uvicorn", middle),
        "sync_middle": cpu("sync-uvicorn", middle),
        "async_small": cpu("async-uvicorn", small),
        "redis_small": cpu("async-uvicorn-redis", small),
        "redis_middle": cpu("async-uvicorn-redis", middle),
        "burst_async_uvicorn": burst("async-uvicorn"),
        "burst_async_daphne": burst("async-daphne"),
        "burst_baseline": burst(BASELINE),
        "burst_last": burst(run.default["key"]) if run.default else "—",
        "last_small": cpu(run.default["key"], min(run.data["plan"]["sizes"])) if run.default and run.data["plan"]["sizes"] else "—",
        "last_big": cpu(run.default["key"], big) if run.default else "—",
        "default_layer": default_layer,
        "other_layer": other,
        "other_big": cpu(layers[other], big) if other else "—",
        "other_ratio": ratio(layers[other], big) if other else "—",
        "other_burst": burst(layers[other]) if other else "—",
    }


# --- the note -------------------------------------------------------------------------


def context(data: dict) -> dict:
    run = Run(data)
    machine, plan, last = data["machine"], data["plan"], data["last_step"]
    placement = data["placement"]
    found_targets = targets(run)
    main_targets = [t for t in found_targets if not t.get("tutorial")]
    steady = plan.get("steady")
    cpu = cpu_breakdown(run)
    return {
        "seconds": num(data["seconds"], ".0f"),
        "minutes": num(data["seconds"] / 60, ".1f"),
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
        "rate_limit_lifted": ", ".join(f"{k}={v}" for k, v in plan["rate_limit_lifted"].items()),
        "steady": steady,
        "steady_offered": num(steady["rate"] * (steady["clients"] - 1)) if steady else None,
        "steady_per_sender": num(steady["rate"] / steady["senders"], "g") if steady else None,
        "storm": plan.get("storm"),
        "storm_per_sender": num(plan["storm"]["rate"] / plan["storm"]["senders"], "g")
        if plan.get("storm")
        else None,
        "last": last,
        "last_flags": " ".join(last["uvicorn_flags"]) or "none",
        "layers": ", ".join(f"`{layer}`" for layer in last["settings"]["REDIS_LAYERS"]),
        "backoff": last["backoff"],
        "baseline_name": run.name(BASELINE),
        "default_name": run.default["name"] if run.default else None,
        "variants": [v["name"] for v in data["variants"]],
        "throughput": room_rows(run, "throughput"),
        "burst": room_rows(run, "burst"),
        "steady_rows": steady_rows(run),
        "capacity": capacity(run),
        "storm_figures": storm_figures(run),
        "targets": found_targets,
        "met": sum(1 for t in main_targets if t["met"]),
        "targets_count": len(main_targets),
        "missed": [t["target"] for t in main_targets if not t["met"]],
        "cpu_missed": any(not t["met"] and "CPU" in t["target"] for t in main_targets),
        "cpu": cpu,
        "memory": memory_breakdown(run),
        "lessons": lessons(run),
    }


def capacity(run: Run) -> list[dict]:
    """What one core could deliver at each variant's measured CPU per delivery."""
    steady = run.data["plan"].get("steady")
    if not steady:
        return []
    found = []
    for s in run.summary:
        if s["scenario"] != "steady":
            continue
        cpu = run.median("throughput", s["variant"], steady["clients"], "cpu_us_per_delivery")
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


def render(data: dict) -> str:
    from django.conf import settings

    if not settings.configured:
        settings.configure(USE_I18N=False, USE_TZ=False)
    from django.template import Context, Engine

    engine = Engine(autoescape=False)
    text = engine.from_string(TEMPLATE.read_text(encoding="utf-8")).render(
        Context(context(data), autoescape=False)
    )
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
            (s for s in run.summary if s["scenario"] == "throughput" and s["variant"] == key),
            key=lambda s: s["clients"],
        )
        if not points:
            continue
        sizes = [s["clients"] for s in points]
        for axis, metric in ((left, "deliveries_per_second"), (right, "cpu_us_per_delivery")):
            middle = [s[metric]["median"] for s in points]
            low = [m - s[metric]["min"] for m, s in zip(middle, points, strict=True)]
            high = [s[metric]["max"] - m for m, s in zip(middle, points, strict=True)]
            axis.errorbar(sizes, middle, yerr=[low, high], marker="o", capsize=3, label=run.name(key))
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
    figure.suptitle("Medians of every round; the bars reach the least and the greatest")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workshop.bench.report")
    parser.add_argument("json", nargs="?", default=str(NOTES / "performance" / "bench.json"))
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
