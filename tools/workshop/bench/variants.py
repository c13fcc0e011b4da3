"""The servers the benchmark measures, found in the steps as they are now.

Nothing here names a step by its number: the tutorial's two consumers are the first
two steps with a chat/consumers.py (the Channels tutorial's synchronous consumer, then
its asynchronous rewrite), and the last step is the highest-numbered one. The last
step runs as it is deployed: its default settings with DEBUG off, under uvicorn with
the flags of its deploy/app-server.sh.
"""

import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from workshop.bench.load import CHAT, TUTORIAL
from workshop.steps import ROOT, Step, all_steps, tutorial_consumer_steps

BASELINE = "baseline"
APP_SERVER_SCRIPT = Path("deploy/app-server.sh")
# Set by each deployment, not part of how the server runs: the benchmark sets its own.
PLACE_OPTIONS = {"--host", "--port", "--workers"}
LAYER_NAMES = {"pubsub": "Redis pub/sub", "core": "Redis core"}


@dataclass(frozen=True)
class Variant:
    key: str  # what the report knows it by: "baseline", "async-uvicorn", "last-pubsub"
    name: str
    step: Step | None  # None: the baseline server
    server: str  # "baseline", "daphne" or "uvicorn"
    layer: str  # "in-memory", "redis", or the last step's REDIS_LAYER
    protocol: str
    env: dict = field(default_factory=dict, hash=False)  # settings its server is given
    flags: tuple[str, ...] = ()  # uvicorn options
    default: bool = False  # the last step's default configuration

    @property
    def redis(self) -> bool:
        return self.layer not in ("in-memory", "none")

    @property
    def folder(self) -> Path:
        return self.step.path if self.step else ROOT / "tools"

    def describe(self) -> dict:
        return {
            "key": self.key,
            "name": self.name,
            "step": self.step.number if self.step else None,
            "server": self.server,
            "layer": self.layer,
            "default": self.default,
            "flags": list(self.flags),
            "settings": self.env,
        }


def last_step() -> Step:
    return all_steps()[-1]


SHELL_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def deployed_uvicorn(step: Step) -> tuple[str, tuple[str, ...], str]:
    """(application, uvicorn options, where they come from) as the step deploys it.

    Read from the `exec python -m uvicorn ...` line of deploy/app-server.sh, less
    the options that only say where to listen; uvicorn's defaults without the script.
    """
    script = step.path / APP_SERVER_SCRIPT
    if not script.exists():
        return "mysite.asgi:application", (), "uvicorn's defaults"
    command = script.read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(
        line for line in command.splitlines() if "-m uvicorn" in line and "exec" in line
    )
    # The shell's ${NAME:-default}, as the script would see it in the bench's
    # environment (where none of them is set: their defaults).
    line = SHELL_DEFAULT.sub(lambda m: os.environ.get(m.group(1)) or m.group(2), line)
    words = shlex.split(line.split("-m uvicorn", 1)[1])
    application, options, flags = words[0], iter(words[1:]), []
    for word in options:
        if word in PLACE_OPTIONS:
            next(options)  # and its value
        else:
            flags.append(word)
    return application, tuple(flags), f"{step.name}/{APP_SERVER_SCRIPT}"


def all_variants(layers: list[str], default_layer: str) -> list[Variant]:
    sync, asynchronous = tutorial_consumer_steps()
    last = last_step()
    _, flags, _ = deployed_uvicorn(last)
    tutorial = [
        ("sync", sync, "daphne", "in-memory"),
        ("sync", sync, "uvicorn", "in-memory"),
        ("async", asynchronous, "daphne", "in-memory"),
        ("async", asynchronous, "uvicorn", "in-memory"),
        ("async", asynchronous, "uvicorn", "redis"),
    ]
    found = [
        Variant(BASELINE, "baseline (raw websockets)", None, BASELINE, "none", TUTORIAL)
    ]
    for kind, step, server, layer in tutorial:
        found.append(
            Variant(
                f"{kind}-{server}" + ("-redis" if layer == "redis" else ""),
                f"step {step.number} ({kind}), {server.capitalize()},"
                f" {'Redis' if layer == 'redis' else layer}",
                step,
                server,
                layer,
                TUTORIAL,
            )
        )
    # The default layer first: the targets are about it.
    for layer in sorted(layers, key=lambda name: name != default_layer):
        found.append(
            Variant(
                f"last-{layer}",
                f"step {last.number} (last), Uvicorn, {LAYER_NAMES.get(layer, layer)}",
                last,
                "uvicorn",
                layer,
                CHAT,
                {"REDIS_LAYER": layer, "DJANGO_DEBUG": "0"},
                flags,
                default=layer == default_layer,
            )
        )
    return found


def server_command(variant: Variant, port: int) -> list[str]:
    """The module and arguments of `python -m ...` that serve the variant."""
    if variant.server == BASELINE:
        return ["workshop.bench.baseline", str(port)]
    if variant.server == "daphne":
        return [
            "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0",
            "mysite.asgi:application",
        ]  # fmt: skip
    application = (
        deployed_uvicorn(variant.step)[0]
        if variant.protocol == CHAT
        else "mysite.asgi:application"
    )
    return [
        "uvicorn", application, "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", *variant.flags,
    ]  # fmt: skip


def python_command(module_and_args: list[str], probe: tuple[str, str] | None = None):
    """`python -m MODULE ARGS`, or the same under workshop.bench.probe (mode, folder)."""
    if probe:
        return [sys.executable, "-m", "workshop.bench.probe", *probe, *module_and_args]
    return [sys.executable, "-m", *module_and_args]
