"""Run FedMD as real processes with Flower's own command-line tools, on loopback (lesson 6).

:func:`run_fedmd_on_flower` starts, in deployment mode on 127.0.0.1 only:

1. ``flower-superlink``: the server's endpoint; it also launches the ``ServerApp`` process. By
   default with TLS (``--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile``) and SuperNode
   authentication (``--enable-supernode-auth``), from a CA, certificate and keys made for the run
   (:mod:`fedkd_lessons.flower_fedmd.credentials`); ``secure=False`` runs ``--insecure`` instead;
2. with authentication, ``flwr supernode register`` of each party's public key: the SuperLink
   answers with the node id, which binds that node to its party for the whole run;
3. one ``flower-supernode`` per party (``--root-certificates``, ``--auth-supernode-private-key``),
   told which party it is and where its disk is;
4. ``flwr run``: builds the app in :mod:`fedkd_lessons.flower_fedmd` into a FAB and submits it.

It waits for the ServerApp's JSON result, can stop one party's node mid-run, and stops every
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

from .fedmd import CONSENSUS_KINDS, Party
from .fedmd import CONSENSUS_RULES, NUM_CLASSES
from .flower_fedmd.credentials import make_credentials
from .flower_fedmd.faults import parse_faults
from .flower_fedmd.party_disk import read_diary, save_party, save_shared_data
from .flower_fedmd.protocol import RoundPolicy
from .validation import check_int_at_least, check_positive_finite

APP_DIR = Path(__file__).parent / "flower_fedmd"
HOST = "127.0.0.1"  # loopback only (and --insecure, when asked for, is acceptable nowhere else)
CONNECTION = "fedmd-loopback"
_BIN = Path(sys.executable).parent  # Flower's command-line tools sit beside this Python


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process listening on port {port} exited with code {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {HOST}:{port} within {timeout:.0f} s")


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
        for process in self.processes.values():
            try:
                tree = psutil.Process(process.pid)
                for member in [tree, *tree.children(recursive=True)]:
                    self.seen.setdefault(member.pid, start_mark(member))
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

    def stop(self, timeout: float = 5.0) -> list[int]:
        """Stop everything started (SIGTERM, then SIGKILL after ``timeout``); return PIDs still alive."""
        self.watch()
        members = [m for m in map(self._alive, self.seen) if m is not None]
        self._end(members, signal.SIGTERM, timeout)
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
        for member in members:
            try:
                member.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(members, timeout=timeout)


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


def run_fedmd_on_flower(
    parties,
    public_images: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    rounds: int = 3,
    subset_size: int = 500,
    digest_epochs: int = 1,
    revisit_epochs: int = 2,
    digest_batch_size: int = 64,
    consensus: str = "logits",
    temperature: float = 1.0,
    rule: str = "mean",
    trim: float = 0.1,
    seed: int = 0,
    policy: RoundPolicy | None = None,
    stop_party: tuple[int, int] | None = None,
    secure: bool = True,
    intruder: bool = False,
    faults: dict[int, str] | None = None,
    twin_of: int | None = None,
    kill_mid_round: tuple[int, int] | None = None,
    startup_timeout: float = 60.0,
    run_timeout: float = 300.0,
    workdir=None,
) -> FlowerFedMDRun:
    """FedMD (Li & Wang 2019, Algorithm 1) with each party in its own Flower SuperNode process.

    The arguments mean what they mean in :func:`fedkd_lessons.fedmd.run_fedmd` (give transfer-learned
    parties; they are saved to the parties' disks and not changed; ``rule`` and ``trim`` as in
    :func:`fedkd_lessons.fedmd.compute_consensus`). In addition:

    Args:
        policy: when the server closes a round without every good reply (:class:`RoundPolicy`);
            default: all but one party must reply, 6 s grace for stragglers, 120 s time-out.
        stop_party: ``(k, j)`` kills party ``k``'s SuperNode (and its ClientApp) right after the
            server has closed message ``j - 1``, before message ``j`` reaches it: party ``k`` then
            never reports after ``j - 1`` rounds, and rounds ``j + 1`` on are averaged without it.
        secure: TLS and SuperNode authentication (default), or ``--insecure`` without either.
        intruder: also start a SuperNode whose key was never registered (needs ``secure``); the
            SuperLink must refuse it. Its fate is in the result's ``intruder``.
        faults: ``{k: "kind@message ..."}`` party ``k`` misbehaves (:mod:`fedkd_lessons.flower_fedmd.faults`).
        twin_of: party ``k`` starts a second SuperNode, with a copy of its disk and a key of its own
            registered as party ``k`` too: two replies from one party each message.
        kill_mid_round: ``(k, j)`` kills party ``k``'s SuperNode while its ClientApp works on
            message ``j >= 1`` (once it has received the consensus, before it replies).
        workdir: a folder for the run's files (default: a new temporary folder, removed afterwards).
    """
    parties = list(parties)
    if not parties:
        raise ValueError("parties: FedMD needs at least one party")
    if not all(isinstance(p, Party) for p in parties):
        raise ValueError("parties must be fedkd_lessons.fedmd.Party objects")
    check_int_at_least(rounds, "rounds", 0)
    check_int_at_least(subset_size, "subset_size", 1)
    if subset_size > len(public_images):
        raise ValueError(f"subset_size must be at most the public set's size {len(public_images)}, got {subset_size}")
    if consensus not in CONSENSUS_KINDS:
        raise ValueError(f"consensus must be one of {CONSENSUS_KINDS}, got {consensus!r}")
    if rule not in CONSENSUS_RULES:
        raise ValueError(f"rule must be one of {CONSENSUS_RULES}, got {rule!r}")
    check_positive_finite(temperature, "temperature")
    check_positive_finite(startup_timeout, "startup_timeout")
    check_positive_finite(run_timeout, "run_timeout")
    policy = policy or RoundPolicy(min_replies=max(1, len(parties) - 1))
    if policy.min_replies > len(parties):
        raise ValueError(f"policy.min_replies must be at most the number of parties {len(parties)}, got {policy.min_replies}")
    for name, value in (("stop_party", stop_party), ("kill_mid_round", kill_mid_round)):
        if value is not None:
            party, message = value
            if not 0 <= party < len(parties) or not 1 <= message <= rounds:
                raise ValueError(f"{name} must be (party in 0..{len(parties) - 1}, message in 1..{rounds}), got {value!r}")
    if intruder and not secure:
        raise ValueError("intruder needs secure=True: without authentication any SuperNode may join")
    faults = dict(faults or {})
    for party, text in faults.items():
        if not 0 <= party < len(parties):
            raise ValueError(f"faults: party must be in 0..{len(parties) - 1}, got {party!r}")
        parse_faults(text)  # raises on a malformed list
    if twin_of is not None and not 0 <= twin_of < len(parties):
        raise ValueError(f"twin_of must be a party in 0..{len(parties) - 1}, got {twin_of!r}")

    own_workdir = workdir is None
    root = Path(tempfile.mkdtemp(prefix="fedmd-flower-") if own_workdir else workdir)
    paths = {name: root / name for name in ("home", "logs", "result", "keys")}
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    party_dirs = [root / f"party-{k}" for k in range(len(parties))]
    for directory, party in zip(party_dirs, parties):
        save_party(directory, party)
        save_shared_data(directory, public_images, test_images, test_labels)
    # the SuperNodes to start: (name, party id, disk)
    nodes = [(f"party-{k}", k, directory) for k, directory in enumerate(party_dirs)]
    if twin_of is not None:
        shutil.copytree(party_dirs[twin_of], root / f"twin-of-{twin_of}")
        nodes.append((f"twin-of-{twin_of}", twin_of, root / f"twin-of-{twin_of}"))

    timings = {}
    clock = time.monotonic()
    credentials = make_credentials(paths["keys"], [name for name, _, _ in nodes] + ["intruder"]) if secure else None
    timings["credentials"] = time.monotonic() - clock

    superlink_port = free_port()
    transport = (f'root-certificates = "{credentials.ca_certificate}"\n' if secure else "insecure = true\n")
    (paths["home"] / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\n'
        f'address = "{HOST}:{superlink_port}"\n{transport}')
    environment = {
        **os.environ,
        "PATH": f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(paths["home"]),  # Flower's config, installed FABs: all in the temporary folder
        "FLWR_DISABLE_UPDATE_CHECK": "1",  # no network: no version check,
        "FLWR_TELEMETRY_ENABLED": "0",  # no telemetry,
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",  # and no `uv sync` of the app's dependencies
        "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.1",  # start a ClientApp within 0.1 s of a message
        "NO_COLOR": "1",  # plain text from Flower's CLI, which the launcher reads
        "MPLBACKEND": "Agg",
        "FEDKD_PROGRESS": "0",
        "OMP_NUM_THREADS": "1",
    }
    if secure:
        link_security = ["--ssl-ca-certfile", str(credentials.ca_certificate), "--ssl-certfile",
                         str(credentials.server_certificate), "--ssl-keyfile", str(credentials.server_key),
                         "--enable-supernode-auth"]
    else:
        link_security = ["--insecure"]

    def node_security(name: str) -> list[str]:
        if not secure:
            return ["--insecure"]
        return ["--root-certificates", str(credentials.ca_certificate),
                "--auth-supernode-private-key", str(credentials.nodes[name].private)]

    processes = ProcessGroup(paths["logs"], environment)
    started = time.monotonic()
    failure = None
    registered: dict[int, int] = {}
    intruder_fate = None
    try:
        superlink = processes.start("superlink", [
            str(_BIN / "flower-superlink"), *link_security, "--host", HOST, "--port", str(superlink_port),
            "--disable-runtime-dependency-installation"])
        wait_for_port(superlink_port, startup_timeout, superlink)
        if secure:
            clock = time.monotonic()
            registered = _register_nodes(nodes, credentials, environment, root, startup_timeout)
            timings["registration"] = time.monotonic() - clock
        for name, party_id, directory in nodes:
            fault = faults.get(party_id, "") if name.startswith("party-") else ""
            processes.start(name, [
                str(_BIN / "flower-supernode"), *node_security(name), "--superlink", f"{HOST}:{superlink_port}",
                "--port", str(free_port()),
                "--node-config", f"party-id={party_id} party-dir='{directory}' faults='{fault}'"])
        if intruder:
            processes.start("intruder", [
                str(_BIN / "flower-supernode"), *node_security("intruder"), "--superlink", f"{HOST}:{superlink_port}",
                "--port", str(free_port()), "--node-config", f"party-id=0 party-dir='{root / 'intruder'}'"])
        run_config = {
            "num-parties": len(nodes), "rounds": rounds, "subset-size": subset_size,
            "public-size": len(public_images), "seed": seed, "digest-epochs": digest_epochs,
            "revisit-epochs": revisit_epochs, "digest-batch-size": digest_batch_size,
            "consensus": consensus, "temperature": float(temperature), "rule": rule, "trim": float(trim),
            "classes": NUM_CLASSES, "registered": " ".join(f"{n}:{p}" for n, p in registered.items()),
            "min-replies": policy.min_replies, "round-timeout": float(policy.timeout), "grace": float(policy.grace),
            "connect-timeout": float(startup_timeout), "result-dir": str(paths["result"])}
        submitted = subprocess.run(
            [str(_BIN / "flwr"), "run", str(APP_DIR), CONNECTION, "--run-config", _toml_pairs(run_config)],
            env=environment, capture_output=True, text=True, timeout=startup_timeout, cwd=root)
        (paths["logs"] / "flwr-run.log").write_text(submitted.stdout + submitted.stderr)
        if submitted.returncode != 0:
            raise RuntimeError(f"`flwr run` failed:\n{submitted.stdout}{submitted.stderr}")
        timings["startup"] = time.monotonic() - started
        kills = [(*stop_party, "before")] if stop_party is not None else []
        kills += [(*kill_mid_round, "during")] if kill_mid_round is not None else []
        record = _wait_for_result(paths["result"], processes, kills, party_dirs, started + run_timeout)
        if record["error"]:
            raise RuntimeError(f"the ServerApp failed: {record['error']}")
        if intruder:
            intruder_fate = _intruder_fate(processes, paths["logs"] / "intruder.log", record)
    except Exception as error:
        failure = error
    finally:  # also on KeyboardInterrupt: nothing started here outlives this call
        seconds = time.monotonic() - started
        timings["run"] = seconds
        left = processes.stop()
        logs = _read_logs(paths["logs"])
        diaries = [read_diary(directory) for directory in party_dirs]
        for name, party_id, directory in nodes[len(parties):]:  # a twin's diary is its party's too
            diaries[party_id] = {**read_diary(directory), **diaries[party_id]}
        if own_workdir:
            shutil.rmtree(root, ignore_errors=True)
    if failure is not None:
        raise FlowerRunError(f"FedMD on Flower failed: {type(failure).__name__}: {failure}\n" + _tail(logs),
                             sorted(processes.seen), left) from failure

    accuracy = np.full((rounds + 1, len(parties)), math.nan)
    for message in record["messages"]:
        for party_id, value in message["accuracy"].items():
            accuracy[message["message"], int(party_id)] = value
    return FlowerFedMDRun(accuracy, tuple(p.name for p in parties), record["messages"], diaries,
                          None if stop_party is None else stop_party[0], seconds, sorted(processes.seen), left, logs,
                          registered, intruder_fate, {k: round(v, 2) for k, v in timings.items()})


def _register_nodes(nodes, credentials, environment, root: Path, timeout: float) -> dict[int, int]:
    """``flwr supernode register`` every node's public key, all at once; ``{node id: party id}``."""
    commands = {name: [str(_BIN / "flwr"), "supernode", "register", str(credentials.nodes[name].public), CONNECTION,
                       "--format", "json"] for name, _, _ in nodes}
    running = {name: subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, cwd=root) for name, command in commands.items()}
    registered = {}
    for name, party_id, _ in nodes:
        output, _ = running[name].communicate(timeout=timeout)
        plain = re.sub(r"\x1b\[[0-9;]*m", "", output)  # colour codes, which rich adds under Jupyter
        node_id = re.search(r'"node-id":\s*(\d+)', plain)  # in the JSON answer, whatever is printed around it
        if running[name].returncode != 0 or node_id is None:
            raise RuntimeError(f"`flwr supernode register` of {name} failed:\n{output}")
        registered[int(node_id.group(1))] = party_id
    return registered


def _intruder_fate(processes: ProcessGroup, log: Path, record: dict) -> dict:
    """Whether the unregistered SuperNode was refused: it exited on its own with an error, it never
    got a node id, and no message of the run was addressed to anyone but the registered parties."""
    process = processes.processes["intruder"]
    deadline = time.monotonic() + 10.0
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text(errors="replace") if log.exists() else ""
    reason = next((line.strip() for line in text.splitlines() if "Failed to activate" in line), None)
    strangers = [a for m in record["messages"] for a in m["addressed"] if not isinstance(a, int)]
    return dict(exit_code=process.poll(), reason=reason, got_node_id="SuperNode ID:" in text,
                addressed_strangers=strangers)


def _toml_pairs(config: dict) -> str:
    """``key=value`` pairs in TOML syntax, as ``flwr run --run-config`` reads them."""
    return " ".join(f"{key}={json.dumps(value)}" for key, value in config.items())


def _wait_for_result(result_dir: Path, processes: ProcessGroup, kills, party_dirs, deadline: float) -> dict:
    """Poll for the ServerApp's result, killing parties when asked: ``(k, j, "before")`` once the
    server has closed message ``j - 1``; ``(k, j, "during")`` once party ``k`` has received message
    ``j`` (its diary holds the consensus of round ``j``). Fail fast if the SuperLink dies."""
    kills = list(kills)
    while time.monotonic() < deadline:
        processes.watch()
        if (result_dir / "result.json").exists():
            return json.loads((result_dir / "result.json").read_text())
        closed = json.loads((result_dir / "progress.json").read_text())["closed"] \
            if (result_dir / "progress.json").exists() else -1
        for kill in list(kills):
            party, message, when = kill
            if (closed >= message - 1) if when == "before" else (party_dirs[party] / f"received-round-{message}.pt").exists():
                processes.stop_one(f"party-{party}")
                kills.remove(kill)
        if processes.processes["superlink"].poll() is not None:
            raise RuntimeError("the SuperLink exited before the run finished")
        time.sleep(0.1)
    raise TimeoutError("the run did not finish in time")


def _read_logs(log_dir: Path) -> dict[str, str]:
    return {path.stem: path.read_text(errors="replace") for path in sorted(log_dir.glob("*.log"))}


def _tail(logs: dict[str, str], lines: int = 15) -> str:
    return "\n".join(f"--- {name} (last {lines} lines) ---\n" + "\n".join(text.splitlines()[-lines:])
                     for name, text in logs.items())
