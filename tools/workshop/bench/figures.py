"""What the note's tables are made of: a benchmark run's JSON (Run), the targets,
and how a figure is written. Each measurement's module turns its own results into
rows with these; report.py puts the note together."""

# The last step's targets, judged on the medians.
CPU_TARGET = 8  # × the baseline's CPU per delivery, in the largest room
SMALL_CPU_TARGET = 30  # × the baseline's CPU per delivery, in the smallest room
MEMORY_TARGET = 3  # × the baseline's RSS per idle connection, in the largest room
JOIN_TARGET_MS = 2  # server CPU per joining socket, in the largest room
STORM_TARGET_S = 10  # from the kill until every client has caught up
# The tutorial's asynchronous rewrite of its consumer: deliveries/s against the
# synchronous one's.
ASYNC_TARGET = 2

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
