"""Run FedMD as real processes with Flower's own command-line tools, on loopback (lesson 6).

:func:`run_fedmd_on_flower` starts, in deployment mode on 127.0.0.1 only:

1. ``flower-superlink``: the server's endpoint; it also launches the ``ServerApp`` process. By
   default with TLS (``--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile``) and SuperNode
   authentication (``--enable-supernode-auth``), from a CA, certificate and keys made for the run
   (:mod:`fedkd_lessons.flower.app.credentials`); ``FlowerSettings(secure=False)`` runs
   ``--insecure`` instead;
2. with authentication, ``flwr supernode register`` of each party's public key (Flower's command,
   run in this process, as is ``flwr run`` below): the SuperLink answers with the node id, which binds that node to its
   party for the whole run;
3. one ``flower-supernode`` per party (``--root-certificates``, ``--auth-supernode-private-key``),
   told which party it is and where its disk is;
4. ``flwr run``: builds the app in :mod:`fedkd_lessons.flower.app` into a FAB and submits it.

Each step is a method of :class:`FlowerLauncher`. It waits for the ServerApp's JSON result, causes
the run's :class:`Incidents` (a party stopped or killed mid-run, faults, a twin, an intruder), and stops every
process it started (each in its own process group, plus any process they spawned, by PID) when
the run ends, also when a step fails. Everything lives in a temporary folder that is removed after.
"""

import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import psutil
import torch

from fedkd_lessons.engine.validation import (POSITIVE, Each, Instance, Integer, Optional, Tensor, check_fields,
                                             checked_arguments)
from fedkd_lessons.fedmd import LABELS, NUM_CLASSES, FedMDSettings, Party
from fedkd_lessons.flower.app.credentials import Credentials, make_credentials
from fedkd_lessons.flower.app.faults import parse_faults
from fedkd_lessons.flower.app.party_disk import read_diary, save_party, save_shared_data
from fedkd_lessons.flower.app.settings import FlowerSettings, RunFacts

APP_DIR = Path(__file__).parent / "app"
HOST = "127.0.0.1"  # loopback only (and --insecure, when asked for, is acceptable nowhere else)
CONNECTION = "fedmd-loopback"
# How often each SuperNode's SuperExec asks for a ClientApp to start. Flower's default is 1 s; at
# 0.1 s the six pollers kept a core busy on this 2-core machine, at 0.5 s a message waits 0.25 s more
# on average and the run takes ~20 % less CPU (measured on the lesson's run).
SUPEREXEC_POLL_SECONDS = 0.5
# How often the launcher looks for the ServerApp's progress (to stop a party on cue) and records new
# PIDs. A ClientApp lives seconds, so none is missed; every look costs a few ms of CPU.
WAIT_POLL_SECONDS = 0.2
_BIN = Path(sys.executable).parent  # Flower's command-line tools sit beside this Python


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@checked_arguments(port=Integer(1, 65535), timeout=POSITIVE, process=Instance(subprocess.Popen))
def wait_for_port(port: int, timeout: float, process: subprocess.Popen) -> None:
    """Return once something listens on ``port``; raise if ``process`` exits first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process listening on port {port} exited with code {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {HOST}:{port} within {timeout:.0f} s")


@checked_arguments(process=Instance(psutil.Process))
def start_mark(process: psutil.Process) -> float:
    """When ``process`` started, to tell it from a later process that gets its PID. On Linux the
    kernel's start time in clock ticks since boot (``/proc/PID/stat``, field 22): psutil's
    ``create_time`` adds the boot time, which moves whenever the wall clock is adjusted, and a
    process whose mark moved would be taken for a stranger and never stopped."""
    try:
        with open(f"/proc/{process.pid}/stat") as stat:
            text = stat.read()
        return float(text[text.rfind(")") + 2 :].split()[19])
    except (OSError, IndexError, ValueError):
        return process.create_time()


class ProcessGroup:
    """Processes this launcher started, each leading its own process group, and everything they spawn.

    Flower's processes spawn others (a SuperExec per SuperLink/SuperNode, a ServerApp, a ClientApp per
    message), some in new sessions. :meth:`watch` records every descendant's PID while the run goes, so
    :meth:`stop` can end each one by PID, whatever group it ended up in.
    """

    def __init__(self, log_dir: Path, environment: dict):
        self.log_dir, self.environment = log_dir, environment
        self.processes: dict[str, subprocess.Popen] = {}
        self.seen: dict[int, float] = {}  # pid -> start_mark (a PID number can be reused later)

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.environment,
                                       start_new_session=True)
        self.processes[name] = process
        self.watch()
        return process

    def watch(self) -> None:
        """Record every process started and every descendant now running. One pass over the
        system's processes finds them all (``children(recursive=True)`` per process made one pass
        each: 16 ms of CPU per call, a sixth of a core at the launcher's ten calls a second)."""
        children: dict[int, list[int]] = {}
        for member in psutil.process_iter(["ppid"]):
            children.setdefault(member.info["ppid"], []).append(member.pid)
        pending = [process.pid for process in self.processes.values()]
        while pending:
            pid = pending.pop()
            pending.extend(children.get(pid, []))
            if pid not in self.seen:
                try:
                    self.seen[pid] = start_mark(psutil.Process(pid))
                except psutil.NoSuchProcess:
                    continue

    def stop_one(self, name: str, timeout: float = 5.0) -> None:
        """Stop ``name`` and all its descendants now (SIGKILL): a party's machine going down."""
        process = self.processes[name]
        try:
            members = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            members = []
        self._end(members, signal.SIGKILL, timeout)
        process.wait(timeout)

    def stop(self, timeout: float = 5.0, grace: float = 0.5) -> list[int]:
        """Stop everything started: SIGTERM, SIGKILL to whatever still runs ``grace`` seconds later
        (Flower's processes shut down within it or not at all: waiting the full ``timeout`` cost 4 s
        a run), then wait up to ``timeout`` for the killed. Returns the PIDs still alive."""
        self.watch()
        members = [m for m in map(self._alive, self.seen) if m is not None]
        self._end(members, signal.SIGTERM, grace)
        self._end([m for m in map(self._alive, self.seen) if m is not None], signal.SIGKILL, timeout)
        for process in self.processes.values():
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        return self.alive()

    def alive(self) -> list[int]:
        """PIDs seen during the run that still run (zombies count as gone)."""
        return [m.pid for m in map(self._alive, self.seen) if m is not None]

    def _alive(self, pid: int):
        try:
            member = psutil.Process(pid)
            if start_mark(member) != self.seen[pid] or member.status() == psutil.STATUS_ZOMBIE:
                return None
            return member
        except psutil.NoSuchProcess:
            return None

    @staticmethod
    def _end(members, sig, timeout) -> None:
        """Send ``sig`` to ``members``; wait until each has ended (a zombie has: it only waits for its
        parent or init to collect it, which may take a while) or ``timeout`` seconds have passed."""
        for member in members:
            try:
                member.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_running(member) for member in members):
            time.sleep(0.05)


def _running(member: psutil.Process) -> bool:
    try:
        return member.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class FlowerRunError(RuntimeError):
    """A step of the Flower run failed; every process was stopped all the same.
    ``pids``: every process seen; ``left_running``: those still alive after stopping (should be none)."""

    def __init__(self, message: str, pids: list[int], left_running: list[int]):
        super().__init__(f"{message}\nprocesses left running: {left_running}")
        self.pids, self.left_running = pids, left_running


@dataclass
class FlowerFedMDRun:
    """What :func:`run_fedmd_on_flower` measured.

    ``accuracy[j, k]`` is party ``k``'s test accuracy after ``j`` rounds, as the party reported it
    (NaN once a party is stopped or its reply dropped), the same layout as
    :class:`fedkd_lessons.fedmd.FedMDHistory`. ``messages`` is the ServerApp's record, one entry per
    message (who was addressed, whose replies were used, which were dropped and why, who was
    silent); ``diaries[k]`` what party ``k`` itself kept of the logits it sent and the consensus it
    received, ``{("sent"|"received", round): tensor}``. ``registered``: node id -> party id, as the
    SuperLink assigned them at registration (empty without authentication). ``intruder``: what
    became of a SuperNode whose key was never registered (``None`` if none was started).
    ``timings``: seconds spent making credentials, registering keys, starting up, and in all.
    """

    accuracy: np.ndarray
    party_names: tuple[str, ...]
    messages: list[dict]
    diaries: list[dict]
    stopped_party: int | None
    seconds: float
    pids: list[int]
    left_running: list[int]
    logs: dict[str, str] = field(repr=False)
    registered: dict[int, int] = field(default_factory=dict)
    intruder: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def bytes_per_message(self) -> list[tuple[int, int]]:
        """``(down, up)`` payload bytes of every message, summed over the parties addressed / replying."""
        return [(sum(m["bytes_down"].values()), sum(m["bytes_up"].values())) for m in self.messages]

    def dropped(self) -> list[tuple[int, object, str]]:
        """Every reply the server dropped: ``(message, party or node, reason)``."""
        return [(m["message"], d["party"], d["reason"]) for m in self.messages for d in m["dropped"]]


@dataclass(frozen=True)
class Incidents:
    """What goes wrong on purpose during a run (lesson 6 and the fault-injection tests); by default nothing.

    Args:
        stop_party: ``(k, j)`` kills party ``k``'s SuperNode (and its ClientApp) right after the
            server has closed message ``j - 1``, before message ``j`` reaches it: party ``k`` then
            never reports after ``j - 1`` rounds, and rounds ``j + 1`` on are averaged without it.
        kill_mid_round: ``(k, j)`` kills party ``k``'s SuperNode while its ClientApp works on
            message ``j >= 1`` (once it has received the consensus, before it replies).
        faults: ``{k: "kind@message ..."}`` party ``k`` misbehaves (:mod:`fedkd_lessons.flower.app.faults`).
        twin_of: party ``k`` starts a second SuperNode, with a copy of its disk and a key of its own
            registered as party ``k`` too: two replies from one party each message.
        intruder: a SuperNode whose key was never registered tries to join (needs a secure run),
            once the first message has closed; the SuperLink must refuse it.
    """

    stop_party: tuple[int, int] | None = None
    kill_mid_round: tuple[int, int] | None = None
    faults: dict = field(default_factory=dict)
    twin_of: int | None = None
    intruder: bool = False

    def __post_init__(self):
        check_fields(self, stop_party=Optional(Each(Integer(0))), kill_mid_round=Optional(Each(Integer(0))),
                     faults=Instance(dict), twin_of=Optional(Integer(0)), intruder=Instance(bool))
        for name in ("stop_party", "kill_mid_round"):  # check_fields gives a list; the fields stay tuples
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))

    def check(self, parties: int, rounds: int, secure: bool) -> None:
        """Raise a ``ValueError`` naming the incident that cannot happen in this run."""
        for name in ("stop_party", "kill_mid_round"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, tuple) and len(value) == 2
                                          and 0 <= value[0] < parties and 1 <= value[1] <= rounds):
                raise ValueError(f"{name} must be (party in 0..{parties - 1}, message in 1..{rounds}), got {value!r}")
        if self.intruder and not secure:
            raise ValueError("intruder needs secure=True: without authentication any SuperNode may join")
        for party, text in self.faults.items():
            if not 0 <= party < parties:
                raise ValueError(f"faults: party must be in 0..{parties - 1}, got {party!r}")
            parse_faults(text)  # raises on a malformed list
        if self.twin_of is not None and not 0 <= self.twin_of < parties:
            raise ValueError(f"twin_of must be a party in 0..{parties - 1}, got {self.twin_of!r}")


@dataclass(frozen=True)
class Node:
    """A SuperNode to start: its name (its key's and log's), the party it serves, that party's disk,
    and the faults it injects."""

    name: str
    party: int
    directory: Path
    faults: str = ""


@checked_arguments(root=Instance(Path), incidents=Instance(Incidents))
def prepare_disks(root: Path, parties: list[Party], public_images, test_images, test_labels,
                  incidents: Incidents) -> list[Node]:
    """Write each party's state and the shared data to its own disk under ``root``; a twin gets a
    copy of its party's. Returns the SuperNodes to start, the parties' first."""
    nodes = []
    for k, party in enumerate(parties):
        directory = root / f"party-{k}"
        save_party(directory, party)
        save_shared_data(directory, public_images, test_images, test_labels)
        nodes.append(Node(f"party-{k}", k, directory, incidents.faults.get(k, "")))
    if incidents.twin_of is not None:
        twin = root / f"twin-of-{incidents.twin_of}"
        shutil.copytree(nodes[incidents.twin_of].directory, twin)
        nodes.append(Node(twin.name, incidents.twin_of, twin))
    return nodes


class FlowerLauncher:
    """The processes and folders of one run on loopback; each method is one step of starting,
    running and stopping it, in the order :func:`run_fedmd_on_flower` calls them."""

    def __init__(self, root: Path, flower: FlowerSettings):
        self.root, self.flower = root, flower
        self.paths = {name: root / name for name in ("home", "logs", "result", "keys")}
        for path in self.paths.values():
            path.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.credentials: Credentials | None = None
        self.environment = {
            **os.environ,
            "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "FLWR_HOME": str(self.paths["home"]),  # Flower's config, installed FABs: all in the temporary folder
            "FLWR_DISABLE_UPDATE_CHECK": "1",  # no network: no version check,
            "FLWR_TELEMETRY_ENABLED": "0",  # no telemetry,
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # and no `uv sync` of the app's dependencies
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": str(SUPEREXEC_POLL_SECONDS),
            "NO_COLOR": "1",  # plain text from Flower's CLI, which the launcher reads
            "MPLBACKEND": "Agg",
            "FEDKD_PROGRESS": "0",
            "OMP_NUM_THREADS": "1",
        }
        self.processes = ProcessGroup(self.paths["logs"], self.environment)
        self.timings: dict[str, float] = {}

    def make_credentials(self, names: list[str]) -> None:
        """A CA, the SuperLink's certificate and a key pair per name (secure runs only), and the
        ``flwr`` command's connection to this SuperLink."""
        clock = time.monotonic()
        if self.flower.secure:
            self.credentials = make_credentials(self.paths["keys"], names)
        self.timings["credentials"] = time.monotonic() - clock
        transport = (f'root-certificates = "{self.credentials.ca_certificate}"\n' if self.flower.secure
                     else "insecure = true\n")
        (self.paths["home"] / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
            f'address = "{HOST}:{self.port}"\n{transport}')

    def start_superlink(self) -> None:
        """``flower-superlink`` on loopback, with TLS and SuperNode authentication in a secure run."""
        if self.flower.secure:
            security = ["--ssl-ca-certfile", str(self.credentials.ca_certificate), "--ssl-certfile",
                        str(self.credentials.server_certificate), "--ssl-keyfile", str(self.credentials.server_key),
                        "--enable-supernode-auth"]
        else:
            security = ["--insecure"]
        superlink = self.processes.start("superlink", [
            str(_BIN / "flower-superlink"), *security, "--host", HOST, "--port", str(self.port),
            "--disable-runtime-dependency-installation"])
        wait_for_port(self.port, self.flower.connect_timeout, superlink)

    def flwr(self, *arguments: str) -> str:
        """Flower's own ``flwr`` command with ``arguments``, run in this process (its Typer app, as
        Typer's test runner calls it) with the run's Flower variables (its home folder, no telemetry,
        no update check) set only while it runs: a ``flwr`` process spends about a second starting
        Python, and the run calls it once per key and once to submit. Returns its plain output."""
        from flwr.cli.app import app as flwr_command  # the `flwr` command line, imported only when needed
        from typer.testing import CliRunner

        flower_environment = {k: v for k, v in self.environment.items() if k.startswith("FLWR_") or k == "NO_COLOR"}
        answer = CliRunner().invoke(flwr_command, list(arguments), env=flower_environment)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", answer.output)  # colour codes, should rich add them anyway
        if answer.exit_code != 0:
            raise RuntimeError(f"`flwr {' '.join(arguments[:2])}` failed:\n{plain}{answer.exception or ''}")
        return plain

    def register(self, nodes: list[Node]) -> dict[int, int]:
        """``flwr supernode register`` every node's public key; ``{node id: party id}`` as the SuperLink
        assigned them (empty in a run without authentication)."""
        if not self.flower.secure:
            return {}
        clock = time.monotonic()
        registered = {}
        for node in nodes:
            plain = self.flwr("supernode", "register", str(self.credentials.nodes[node.name].public), CONNECTION)
            node_id = re.search(r"SuperNode (\d+) registered successfully", plain)
            if node_id is None:
                raise RuntimeError(f"`flwr supernode register` of {node.name} named no node id:\n{plain}")
            registered[int(node_id.group(1))] = node.party
        self.timings["registration"] = time.monotonic() - clock
        return registered

    def start_supernode(self, name: str, party: int, directory: Path, faults: str = "") -> None:
        """``flower-supernode`` ``name``, told which party it is and where its disk is."""
        if self.flower.secure:
            security = ["--root-certificates", str(self.credentials.ca_certificate),
                        "--auth-supernode-private-key", str(self.credentials.nodes[name].private)]
        else:
            security = ["--insecure"]
        self.processes.start(name, [
            str(_BIN / "flower-supernode"), *security, "--superlink", f"{HOST}:{self.port}", "--port", str(free_port()),
            "--node-config", f"party-id={party} party-dir='{directory}' faults='{faults}'"])

    def submit(self, run_config: dict) -> None:
        """``flwr run``: build the app into a FAB and submit it with ``run_config``."""
        output = self.flwr("run", str(APP_DIR), CONNECTION, "--run-config", _toml_pairs(run_config))
        (self.paths["logs"] / "flwr-run.log").write_text(output)

    def wait(self, incidents: Incidents, nodes: list[Node], deadline: float) -> dict:
        """Poll for the ServerApp's record, causing the incidents on cue: a party stopped once the
        server has closed message ``j - 1`` (``stop_party``), or once it has received message ``j``
        (``kill_mid_round``: its diary holds the consensus of round ``j``); the intruder started once
        message 0 has closed. Fail fast if the SuperLink dies."""
        kills = [(*incidents.stop_party, "before")] if incidents.stop_party is not None else []
        kills += [(*incidents.kill_mid_round, "during")] if incidents.kill_mid_round is not None else []
        result_dir = self.paths["result"]
        while time.monotonic() < deadline:
            self.processes.watch()
            if (result_dir / "result.json").exists():
                return json.loads((result_dir / "result.json").read_text())
            closed = json.loads((result_dir / "progress.json").read_text())["closed"] \
                if (result_dir / "progress.json").exists() else -1
            for kill in list(kills):
                party, message, when = kill
                received = nodes[party].directory / f"received-round-{message}.pt"
                if (closed >= message - 1) if when == "before" else received.exists():
                    self.processes.stop_one(f"party-{party}")
                    kills.remove(kill)
            if incidents.intruder and closed >= 0 and "intruder" not in self.processes.processes:
                self.start_supernode("intruder", 0, self.root / "intruder")
            if self.processes.processes["superlink"].poll() is not None:
                raise RuntimeError("the SuperLink exited before the run finished")
            time.sleep(WAIT_POLL_SECONDS)
        raise TimeoutError("the run did not finish in time")

    def intruder_fate(self, record: dict) -> dict:
        """Whether the unregistered SuperNode was refused: it exited on its own with an error, it never
        got a node id, and no message of the run was addressed to anyone but the registered parties."""
        process = self.processes.processes.get("intruder")
        if process is None:
            raise RuntimeError("the intruder was never started: the run closed no message")
        deadline = time.monotonic() + 10.0
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        log = self.paths["logs"] / "intruder.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        reason = next((line.strip() for line in text.splitlines() if "Failed to activate" in line), None)
        strangers = [a for m in record["messages"] for a in m["addressed"] if not isinstance(a, int)]
        return dict(exit_code=process.poll(), reason=reason, got_node_id="SuperNode ID:" in text,
                    addressed_strangers=strangers)

    def stop(self) -> list[int]:
        """Stop every process started; the PIDs still alive afterwards (should be none)."""
        clock = time.monotonic()
        left = self.processes.stop()
        self.timings["stop"] = time.monotonic() - clock
        return left


def check_run_inputs(parties: list[Party], public_images, settings: FedMDSettings, flower: FlowerSettings,
                     incidents: Incidents) -> None:
    """What :func:`run_fedmd_on_flower`'s arguments must agree on, each checked by itself already:
    the subset fits the public set, enough parties for the round policy, incidents that can happen."""
    if settings.subset_size > len(public_images):
        raise ValueError(f"subset_size must be at most the public set's size {len(public_images)}, "
                         f"got {settings.subset_size}")
    if flower.min_replies > len(parties):
        raise ValueError(f"min_replies must be at most the number of parties {len(parties)}, got {flower.min_replies}")
    incidents.check(len(parties), settings.rounds, flower.secure)


@checked_arguments(parties=Each(Instance(Party)), public_images=Tensor(), test_images=Tensor(), test_labels=LABELS,
                   settings=Optional(Instance(FedMDSettings)), flower=Optional(Instance(FlowerSettings)),
                   incidents=Optional(Instance(Incidents)))
def run_fedmd_on_flower(parties, public_images: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
                        settings: FedMDSettings | None = None, flower: FlowerSettings | None = None,
                        incidents: Incidents | None = None, *, workdir=None) -> FlowerFedMDRun:
    """FedMD (Li & Wang 2019, Algorithm 1) with each party in its own Flower SuperNode process.

    Args:
        parties: transfer-learned :class:`fedkd_lessons.fedmd.Party` objects; they are saved to the
            parties' disks and not changed.
        public_images, test_images, test_labels: as in :func:`fedkd_lessons.fedmd.run_fedmd`.
        settings: FedMD's :class:`fedkd_lessons.fedmd.FedMDSettings`, the same as in one process.
        flower: the deployment's :class:`FlowerSettings` (round policy, time-outs, TLS and authentication).
        incidents: what goes wrong on purpose (:class:`Incidents`; default: nothing).
        workdir: a folder for the run's files (default: a new temporary folder, removed afterwards).
    """
    settings = FedMDSettings() if settings is None else settings
    flower = FlowerSettings() if flower is None else flower
    incidents = Incidents() if incidents is None else incidents
    check_run_inputs(parties, public_images, settings, flower, incidents)

    own_workdir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="fedmd-flower-") if own_workdir else workdir)
    nodes = prepare_disks(root, parties, public_images, test_images, test_labels, incidents)
    launcher = FlowerLauncher(root, flower)
    launcher.make_credentials([node.name for node in nodes] + ["intruder"])
    started = time.monotonic()
    failure = record = None
    registered: dict[int, int] = {}
    intruder = None
    try:
        launcher.start_superlink()
        registered = launcher.register(nodes)
        for node in nodes:
            launcher.start_supernode(node.name, node.party, node.directory, node.faults)
        facts = RunFacts(len(nodes), len(public_images), NUM_CLASSES, str(launcher.paths["result"]), registered)
        launcher.submit({**settings.to_run_config(), **flower.to_run_config(), **facts.to_run_config()})
        launcher.timings["startup"] = time.monotonic() - started
        record = launcher.wait(incidents, nodes, started + flower.run_timeout)
        if record["error"]:
            raise RuntimeError(f"the ServerApp failed: {record['error']}")
        if incidents.intruder:
            intruder = launcher.intruder_fate(record)
    except Exception as error:
        failure = error
    finally:  # also on KeyboardInterrupt: nothing started here outlives this call
        seconds = launcher.timings["run"] = time.monotonic() - started
        left = launcher.stop()
        logs = _read_logs(launcher.paths["logs"])
        diaries = _read_diaries(nodes, len(parties))
        if own_workdir:
            shutil.rmtree(root, ignore_errors=True)
    if failure is not None:
        raise FlowerRunError(f"FedMD on Flower failed: {type(failure).__name__}: {failure}\n" + _tail(logs),
                             sorted(launcher.processes.seen), left) from failure
    return FlowerFedMDRun(_accuracy_table(record, settings.rounds, len(parties)), tuple(p.name for p in parties),
                          record["messages"], diaries, None if incidents.stop_party is None else incidents.stop_party[0],
                          seconds, sorted(launcher.processes.seen), left, logs, registered, intruder,
                          {k: round(v, 2) for k, v in launcher.timings.items()})


def _accuracy_table(record: dict, rounds: int, parties: int) -> np.ndarray:
    """``accuracy[j, k]``: party ``k``'s reported accuracy after ``j`` rounds (NaN where it did not report)."""
    accuracy = np.full((rounds + 1, parties), math.nan)
    for message in record["messages"]:
        for party_id, value in message["accuracy"].items():
            accuracy[message["message"], int(party_id)] = value
    return accuracy


def _read_diaries(nodes: list[Node], parties: int) -> list[dict]:
    """Each party's diary; a twin's entries count as its party's."""
    diaries = [read_diary(node.directory) for node in nodes[:parties]]
    for node in nodes[parties:]:
        diaries[node.party] = {**read_diary(node.directory), **diaries[node.party]}
    return diaries


def _toml_pairs(config: dict) -> str:
    """``key=value`` pairs in TOML syntax, as ``flwr run --run-config`` reads them."""
    return " ".join(f"{key}={json.dumps(value)}" for key, value in config.items())


def _read_logs(log_dir: Path) -> dict[str, str]:
    return {path.stem: path.read_text(errors="replace") for path in sorted(log_dir.glob("*.log"))}


def _tail(logs: dict[str, str], lines: int = 15) -> str:
    return "\n".join(f"--- {name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])
                     for name, text in logs.items())
