"""The figures of a run, summed up: each measurement's row as it is printed, the
median and spread of every group of rounds with its ratio to the baseline, and the
smoke run's verdict."""

from workshop.bench.variants import BASELINE

SUMMARISED = {
    "throughput": [
        "deliveries_per_second",
        "p50_ms",
        "p99_ms",
        "delivery_ratio",
        "cpu_us_per_delivery",
        "rss_kib_per_idle_connection",
        "cpu_ms_per_join",
        "client_cpu_share",
    ],
    "steady": [
        "p50_ms",
        "p99_ms",
        "delivery_ratio",
        "deliveries_per_second",
        "server_cpu_share",
        "client_cpu_share",
    ],
    "storm": [
        "server_up_s",
        "all_reconnected_s",
        "all_caught_up_s",
        "median_caught_up_s",
        "lost",
        "storm_cpu_s",
        "storm_cpu_share",
        "failed_attempts",
        "client_cpu_share",
    ],
}
SUMMARISED["burst"] = SUMMARISED["throughput"]
SUMMARISED["slow_readers"] = [
    "delivery_ratio",
    "sent_s",
    "rss_growth_mib",
    "rss_growth_mib_per_stalled",
    "tcp_buffers_growth_mib",
    "stalled_delivery_ratio",
    "stalled_skipped_ratio",
    "stalled_unaccounted",
    "stalled_caught_up_s",
]
SUMMARISED["big_room"] = [
    "opened",
    "settled_s",
    "delivery_ratio",
    "last_arrival_ms",
    "median_arrival_ms",
    "cpu_ms_per_join",
    "rss_kib_per_idle_connection",
]
# Compared with the baseline's median in the same group.
RATIOS = [
    "deliveries_per_second",
    "cpu_us_per_delivery",
    "rss_kib_per_idle_connection",
    "cpu_ms_per_join",
]


def spread(values: list) -> dict:
    """Median, least and greatest; None (a latency never reached, a figure a failed
    run does not have) counts as worse than any number."""
    ordered = sorted(values, key=lambda v: (v is None, v if v is not None else 0))
    middle = len(ordered) // 2
    if len(ordered) % 2:
        median = ordered[middle]
    elif None in (ordered[middle - 1], ordered[middle]):
        median = None
    else:
        median = (ordered[middle - 1] + ordered[middle]) / 2
    return {
        "median": median,
        "min": ordered[0] if ordered else None,
        "max": ordered[-1] if ordered else None,
        "runs": len(values),
    }


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (
            row["scenario"],
            row["variant"],
            row["clients"],
            row.get("configuration"),
        )
        groups.setdefault(key, []).append(row)
    found = []
    for (scenario, variant, clients, configuration), group in groups.items():
        summary = {
            "scenario": scenario,
            "variant": variant,
            "clients": clients,
            **({"configuration": configuration} if configuration else {}),
            "runs": len(group),
            "failed": [row["error"] for row in group if "error" in row],
            "expected": group[0].get("expected"),
        }
        for metric in SUMMARISED[scenario]:
            summary[metric] = spread([row.get(metric) for row in group])
        base = groups.get((scenario, BASELINE, clients, None))
        if base and variant != BASELINE and scenario in ("throughput", "burst"):
            summary["vs_baseline"] = {}
            for metric in RATIOS:
                mine = summary[metric]["median"]
                theirs = spread([row.get(metric) for row in base])["median"]
                paired = [
                    row.get(metric) / other.get(metric)
                    for row in group
                    for other in base
                    if other["round"] == row["round"]
                    and row.get(metric)
                    and other.get(metric)
                ]
                summary["vs_baseline"][metric] = {
                    "of_medians": mine / theirs if mine and theirs else None,
                    "paired": spread(paired) if paired else None,
                }
        found.append(summary)
    return found


def number(value, spec=",.0f") -> str:
    return "—" if value is None else format(value, spec)


def format_row(row: dict) -> str:
    label = (
        f"  {row['job_seconds']:>4.0f} s {row['variant']:<20} {row['scenario']:<10}"
        f" N={row['clients']:<5}"
    )
    if row.get("error"):
        return f"{label} FAILED: {row['error']}"
    if row["scenario"] == "storm":
        return (
            f"{label} server up {number(row['server_up_s'], '.1f')} s, everyone"
            f" reconnected {number(row['all_reconnected_s'], '.1f')} s, caught up"
            f" {number(row['all_caught_up_s'], '.1f')} s after the kill; lost"
            f" {row['lost']} of {row['stored']} stored; server CPU"
            f" {row['storm_cpu_s']:.1f} s ({row['storm_cpu_share']:.0%} of a core)"
        )
    if row["scenario"] == "slow_readers":
        text = (
            f"{label} {row['configuration']:<9} {row['stalled']} stalled:"
            f" server memory +{row['rss_growth_mib']:.1f} MiB, TCP buffers"
            f" +{row['tcp_buffers_growth_mib']:.1f} MiB; readers got"
            f" {row['delivery_ratio']:.2%}"
        )
        if row["stalled"]:
            text += (
                f"; stalled pages, reading again, got"
                f" {row['stalled_delivery_ratio']:.2%} and were told they skipped"
                f" {row['stalled_skipped_ratio']:.2%} in"
                f" {row['stalled_caught_up_s']:.1f} s"
            )
            if row["stalled_unaccounted"]:
                text += f"; {row['stalled_unaccounted']} UNACCOUNTED FOR"
        return text
    if row["scenario"] == "big_room":
        return (
            f"{label} {row['opened']:,} open, quiet after"
            f" {row['settled_s']:.0f} s; one message reached"
            f" {row['delivery_ratio']:.2%}, the last after"
            f" {number(row['last_arrival_ms'])} ms; CPU"
            f" {row['cpu_ms_per_join']:.1f} ms per join,"
            f" {row['rss_kib_per_idle_connection']:.0f} KiB per connection"
        )
    text = (
        f"{label} {row['deliveries_per_second']:>9,.0f} deliveries/s"
        f"  p50 {number(row['p50_ms'], '.1f'):>7} ms  p99 {number(row['p99_ms'], '.1f'):>7} ms"
        f"  delivered {row['delivery_ratio']:>7.2%}"
    )
    if row["scenario"] == "steady":
        text += f"  server CPU {row['server_cpu_share']:.0%}"
    else:
        text += f"  CPU {number(row.get('cpu_us_per_delivery'))} µs/delivery"
    if row.get("duplicates"):
        text += f"  DUPLICATES {row['duplicates']}"
    if row.get("errors"):
        text += f"  ERROR FRAMES {row['errors']}"
    return text


def print_summary(summaries: list[dict], names: dict) -> None:
    print("\nMedians (least–greatest) of every group")
    for s in summaries:
        head = f"  {names[s['variant']]:<42} {s['scenario']:<10} N={s['clients']:<5}"
        if s["scenario"] == "storm":
            print(
                f"{head} caught up {number(s['all_caught_up_s']['median'], '.1f')} s,"
                f" lost {number(s['lost']['max'])} at most"
            )
            continue
        if s["scenario"] == "slow_readers":
            print(
                f"{head} {s['configuration']}: memory"
                f" +{number(s['rss_growth_mib']['median'], '.1f')} MiB"
            )
            continue
        if s["scenario"] == "big_room":
            print(
                f"{head} {number(s['opened']['min'])} open, last arrival"
                f" {number(s['last_arrival_ms']['median'])} ms"
            )
            continue
        figures = [
            f"{number(s['deliveries_per_second']['median'])} deliveries/s",
            f"p99 {number(s['p99_ms']['median'], '.0f')} ms",
            f"delivered {number(s['delivery_ratio']['min'], '.1%')} at least",
        ]
        if "cpu_us_per_delivery" in s:
            figures.append(f"CPU {number(s['cpu_us_per_delivery']['median'])} µs")
            ratio = s.get("vs_baseline", {}).get("cpu_us_per_delivery", {})
            if ratio.get("of_medians"):
                figures.append(f"({ratio['of_medians']:.1f}× baseline)")
        print(f"{head} {', '.join(figures)}")


def check_quick(report: dict) -> list[str]:
    """Every variant ran and delivered, with no message twice; the last step
    delivered everything and lost nothing in the storm. Not how fast."""
    problems = []
    names = {v["key"]: v["name"] for v in report["variants"]}
    chat = {
        v["key"]
        for v in report["variants"]
        if v["step"] == report["last_step"]["number"]
    }
    ran = {row["variant"] for row in report["runs"]}
    for key, name in names.items():
        if key not in ran:
            problems.append(f"{name}: did not run")
    for row in report["runs"]:
        where = f"{names[row['variant']]}: {row['scenario']}"
        if row.get("error"):
            problems.append(f"{where}: {row['error']}")
        elif row["scenario"] == "storm":
            if row["all_caught_up_s"] is None:
                problems.append(f"{where}: not every client caught up")
            if row["lost"]:
                problems.append(f"{where}: {row['lost']} messages lost")
        elif row["scenario"] == "slow_readers":
            if row["delivery_ratio"] < 1 or row.get("stalled_unaccounted"):
                problems.append(
                    f"{where} ({row['configuration']}): readers got"
                    f" {row['delivery_ratio']:.1%}; messages neither received nor"
                    f" said skipped by stalled pages: {row.get('stalled_unaccounted')}"
                )
        elif row["scenario"] == "big_room":
            if row["refused"] or row["delivery_ratio"] < 1:
                problems.append(
                    f"{where}: {row['opened']} open of {row['clients']},"
                    f" delivered {row['delivery_ratio']:.1%}"
                )
        else:
            if not row["received"]:
                problems.append(f"{where}: delivered nothing")
            if row["duplicates"]:
                problems.append(f"{where}: {row['duplicates']} messages arrived twice")
            if row["variant"] in chat and row["delivery_ratio"] < 1:
                problems.append(f"{where}: delivered {row['delivery_ratio']:.1%}")
    return problems
