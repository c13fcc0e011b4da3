"""How much the benchmark measures: the full run (make bench) and CI's smoke run."""

from dataclasses import dataclass

SCENARIOS = (
    "throughput",
    "burst",
    "steady",
    "storm",
    "slow_readers",
    "big_room",
    "breakdown",
)
# The baseline sends this many times the messages in a throughput run: a few
# microseconds a delivery, 6,000 deliveries are tens of milliseconds of CPU, and the
# kernel counts a process's CPU time in ticks of 10 ms.
BASELINE_MESSAGES = 10
# The burst: 5 members of a 10-person room send 40 messages each, at once.
BURST_CLIENTS, BURST_SENDERS, BURST_MESSAGES = 10, 5, 40


@dataclass(frozen=True)
class Steady:
    clients: int
    senders: int
    rate: float  # messages a second, all senders together
    seconds: float
    drain: float  # the longest wait for deliveries after the last send


@dataclass(frozen=True)
class StormPlan:
    listeners: int
    senders: int
    rate: float  # messages a second during the storm, all senders together
    warmup: float  # seconds of messages before the kill
    limit: float  # the longest wait for everyone to catch up, from the kill


@dataclass(frozen=True)
class SlowReaders:
    readers: int  # pages that read; the first one sends
    stalled: int  # pages that stop reading
    messages: int
    text_bytes: int  # a message's padding: big messages fill buffers sooner
    # The last step's CHANNEL_CAPACITY for these runs: smaller than its default, so
    # that the bound shows with fewer messages.
    capacity: int


@dataclass(frozen=True)
class Plan:
    rounds: int
    sizes: tuple[int, ...]  # throughput room sizes: the baseline and the last step
    tutorial_sizes: tuple[int, ...]  # the tutorial's two consumers, which matter less
    deliveries: int  # aim for about this many deliveries per throughput run
    senders: int
    burst: bool
    steady: Steady | None
    storm: StormPlan | None
    slow_readers: SlowReaders | None
    breakdowns: bool
    # Under tracemalloc a server is several times slower: a smaller room, for memory
    # per idle connection does not depend on the room's size.
    memory_clients: int = 100
    profile_clients: int = 1000
    # One room this big on one server process, once (0: none).
    big_room: int = 0

    def per_sender(self, clients: int) -> int:
        senders = min(self.senders, clients)
        return max(1, -(-self.deliveries // ((clients - 1) * senders)))

    def users(self) -> int:
        """The most logged-in users any measurement needs at once."""
        return max(
            [
                *self.sizes,
                *self.tutorial_sizes,
                self.profile_clients if self.breakdowns else 0,
                self.big_room,
            ]
            + ([self.steady.clients] if self.steady else [])
            + ([self.storm.listeners + self.storm.senders] if self.storm else [])
            + (
                [self.slow_readers.readers + self.slow_readers.stalled]
                if self.slow_readers
                else []
            )
        )


FULL = Plan(
    rounds=3,
    sizes=(10, 100, 1000),
    tutorial_sizes=(100,),
    deliveries=6_000,
    senders=4,
    burst=True,
    steady=Steady(clients=1000, senders=4, rate=20, seconds=4, drain=8),
    storm=StormPlan(listeners=1000, senders=4, rate=5, warmup=1.5, limit=60),
    slow_readers=SlowReaders(
        readers=5, stalled=2, messages=5000, text_bytes=3000, capacity=200
    ),
    breakdowns=True,
    big_room=10_000,
)
# CI's smoke run: every variant starts and delivers, once; the steady load and the
# storm run in small rooms so that their code is exercised too.
QUICK = Plan(
    rounds=1,
    sizes=(),
    tutorial_sizes=(),
    deliveries=400,
    senders=4,
    burst=True,
    steady=Steady(clients=50, senders=4, rate=20, seconds=2, drain=5),
    storm=StormPlan(listeners=50, senders=2, rate=5, warmup=1.5, limit=30),
    slow_readers=SlowReaders(
        readers=3, stalled=2, messages=1500, text_bytes=3000, capacity=50
    ),
    breakdowns=False,
    big_room=200,
)
