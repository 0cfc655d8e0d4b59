"""The local launcher: a whole topology as node processes on this machine.

``idn up`` starts one ``idn node --topology T --id N`` subprocess per node, each in its
own session (so the network outlives the command that started it and a Ctrl-C in the
operator's shell does not reach it), with its log in the run folder
(``.idn/run/<topology>/<node>.log``) and its persisted plan under ``state/<node>``.
One random control token is shared by the nodes of a run: it is written to the run's
token file (``token``, mode 0600), which every node reads through
``--control-token-file``, and to the state file, which is what ``idn down``, ``idn
apply`` and ``idn status`` read later. A node's log starts with its command line
(``$ ...``): that line alone restarts the node as it was, token included, and never
shows the token itself.

Before starting, every node's address must be free: a process already answering there
(often a node of an earlier run restarted by hand) is named, not raced. Plans that an
earlier run persisted under ``state/`` are restored by the nodes; ``fresh=True``
(``idn up --fresh``) removes them first.

State file (JSON)::

    {"topology": "/abs/deploy/topologies/demo.yaml", "name": "demo", "token": "...",
     "run_dir": "/abs/.idn/run/demo", "started": 1700000000.0, "emulate": true,
     "nodes": {"edge-1": {"pid": 1234, "address": "127.0.0.1:18011", "tier": "edge",
                          "log": "/abs/.idn/run/demo/edge-1.log"}, ...}}

Stopping is SIGTERM (the node drains in-flight requests and exits 0), then SIGKILL after
a bound. A pid is only signalled while its command line still names this node, so a
stale state file never kills an unrelated process that reused the pid. A node that is
no longer the pid the state recorded (restarted by hand) is found by its address: the
process listening there, if its command line is ``idn node ... --id <node>``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from idn.protos import grpc_service_pb2 as pb
from idn.protos import grpc_service_pb2_grpc as pb_grpc
from idn.topology import Topology, load_topology

RUN_ROOT = Path(".idn") / "run"
TOKEN_ENV = "IDN_CONTROL_TOKEN"
SETTLE_S = 0.4  # two health-check intervals of a node's defaults
TOKEN_FILE = "token"     # in the run folder, mode 0600: what --control-token-file names
PLAN_FILE = "plan.json"  # what a node persists in its state folder (idn.node.deployment.PLAN_FILE)


class LaunchError(RuntimeError):
    """A network could not be started, found or controlled; the message says what to do."""


@dataclass
class NodeProcess:
    pid: int
    address: str
    tier: str
    log: str


@dataclass
class RunState:
    """What ``idn up`` started: enough for ``down``/``apply``/``status`` in another process."""
    topology: str
    name: str
    token: str
    run_dir: str
    nodes: dict[str, NodeProcess]
    emulate: bool = False
    started: float = field(default_factory=time.time)
    catalog: str | None = None  # what the nodes were started with, so one can be restarted alike
    node_args: list[str] = field(default_factory=list)
    # Arguments only some nodes got (after node_args), e.g. one node forwarding over streams.
    own_args: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, file: Path) -> RunState:
        try:
            doc = json.loads(text)
            nodes = {nid: NodeProcess(**n) for nid, n in doc.pop("nodes").items()}
            return cls(nodes=nodes, **doc)
        except (ValueError, KeyError, TypeError) as e:
            raise LaunchError(f"{file}: not an `idn up` state file ({e}); remove it and run `idn up` again") from None

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.chmod(tmp, 0o600)  # it holds the control token
        tmp.replace(path)
        return path

    @property
    def addresses(self) -> dict[str, str]:
        return {nid: n.address for nid, n in self.nodes.items()}


def topology_name(topology_path: str | Path) -> str:
    return Path(topology_path).stem


def default_state_path(topology_path: str | Path) -> Path:
    return RUN_ROOT / topology_name(topology_path) / "state.json"


def load_state(path: Path) -> RunState:
    if not path.is_file():
        raise LaunchError(f"{path}: no state file; start the network with `idn up <topology>` "
                          f"(or pass --state to the file it wrote)")
    return RunState.from_json(path.read_text(encoding="utf-8"), path)


# -- processes ----------------------------------------------------------------------------

def write_token_file(run_dir: Path, token: str) -> Path:
    """The run's control token in ``run_dir/token``, readable by its owner only."""
    path = run_dir / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)  # an older file keeps its mode through O_CREAT
    return path


def node_command(topology_path: Path, node_id: str, state_dir: Path, catalog: Path | None, plan: Path | None,
                 emulate: bool, extra_args: Iterable[str] = (), token_file: Path | None = None) -> list[str]:
    """The node's full command line: enough, as logged, to restart it as it was (the token by file)."""
    cmd = [sys.executable, "-m", "idn.cli", "node", "--topology", str(topology_path), "--id", node_id,
           "--state-dir", str(state_dir)]
    if token_file is not None:
        cmd += ["--control-token-file", str(token_file)]
    if catalog is not None:
        cmd += ["--catalog", str(catalog)]
    if plan is not None:
        cmd += ["--plan", str(plan)]
    if emulate:
        cmd.append("--emulate")
    return cmd + list(extra_args)


def pid_runs_node(pid: int, node_id: str) -> bool:
    """True while ``pid`` is alive and is still an ``idn node ... --id <node_id>`` process."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        try:  # no procfs (macOS): fall back to "is it alive", the best this platform tells us
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    args = [a.decode(errors="replace") for a in cmdline]
    return "node" in args and "--id" in args and node_id in args and _is_zombie(pid) is False


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on a TCP port (any local address), from /proc/net/tcp{,6}."""
    out = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                out.add(f[9])
    return out


def pid_listening_on(address: str) -> int | None:
    """The pid of a process of this user listening on ``address``'s port (Linux /proc; None when unknown)."""
    try:
        port = int(address.rpartition(":")[2])
    except ValueError:
        return None
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(proc.name)
        except OSError:
            continue
    return None


def describe_pid(pid: int) -> str:
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        text = " ".join(a.decode(errors="replace") for a in args if a)
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({text[:160]})"


def address_in_use(address: str, timeout: float = 0.3) -> bool:
    """Something accepts TCP connections at ``address``."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def find_node_pid(node_id: str, address: str, pid: int | None = None) -> int | None:
    """The pid serving node ``node_id``: ``pid`` while it still runs it, else whoever listens on its address
    if that is an ``idn node ... --id node_id`` process (a node restarted by hand)."""
    if pid is not None and pid_runs_node(pid, node_id):
        return pid
    other = pid_listening_on(address)
    if other is not None and pid_runs_node(other, node_id):
        return other
    return None


def persisted_plans(run_dir: Path) -> dict[str, int | None]:
    """Node -> version of the plan an earlier run left in ``run_dir/state/<node>`` (None: unreadable)."""
    out: dict[str, int | None] = {}
    for f in sorted((run_dir / "state").glob(f"*/{PLAN_FILE}")):
        try:
            v = json.loads(f.read_text(encoding="utf-8")).get("version")
            out[f.parent.name] = v if isinstance(v, int) else None
        except (OSError, ValueError, AttributeError):
            out[f.parent.name] = None
    return out


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def log_tail(path: str | Path, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def server_ready(address: str, timeout: float = 1.0) -> bool:
    """The node's own readiness (OIP ``ServerReady``): true once every variant it must serve is loaded."""
    with grpc.insecure_channel(address) as ch:
        try:
            return pb_grpc.GRPCInferenceServiceStub(ch).ServerReady(pb.ServerReadyRequest(), timeout=timeout).ready
        except grpc.RpcError:
            return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_nodes(nodes: dict[str, NodeProcess], timeout_s: float = 10.0,
               procs: dict[str, subprocess.Popen] | None = None) -> dict[str, str]:
    """SIGTERM every node, wait up to ``timeout_s`` for them to drain, SIGKILL the rest.

    Returns node -> how it ended (``stopped``, ``killed``, ``not running``).
    ``procs`` are Popen handles when this process started them (reaped, no zombies).
    """
    procs = procs or {}
    outcome: dict[str, str] = {}
    alive: dict[str, int] = {}
    for nid, n in nodes.items():
        pid = find_node_pid(nid, n.address, n.pid)
        if pid is not None:
            _signal(pid, signal.SIGTERM)
            alive[nid] = pid
            if pid != n.pid:
                outcome[nid] = f"pid {pid} (found by its address {n.address})"
        else:
            outcome[nid] = "not running"
    deadline = time.monotonic() + timeout_s
    while alive and time.monotonic() < deadline:
        for nid, pid in list(alive.items()):
            if nid in procs:
                procs[nid].poll()
            if not pid_runs_node(pid, nid):
                outcome[nid] = "stopped" + (f": {outcome[nid]}" if nid in outcome else "")
                del alive[nid]
        time.sleep(0.05)
    for nid, pid in alive.items():
        _signal(pid, signal.SIGKILL)
        outcome[nid] = "killed" + (f": {outcome[nid]}" if nid in outcome else "")
    for p in procs.values():
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    return outcome


def check_addresses_free(topo: Topology) -> None:
    """Refuse to start when something already answers at a node's address, naming it."""
    busy = []
    for nid, node in topo.nodes.items():
        if address_in_use(node.address):
            pid = pid_listening_on(node.address)
            who = describe_pid(pid) if pid is not None else "another process"
            busy.append(f"{nid}'s address {node.address} is in use by {who}")
    if busy:
        raise LaunchError("; ".join(busy) + ". Stop it first (`idn down <topology>` stops nodes the state file "
                          "names, also when they were restarted by hand) or change the addresses")


def start_network(topology_path: Path, *, plan: Path | None = None, catalog: Path | None = None,
                  emulate: bool = False, run_dir: Path | None = None, token: str | None = None,
                  ready_timeout_s: float = 60.0, extra_node_args: Iterable[str] = (),
                  on_wait: Callable[[str], None] | None = None,
                  fresh: bool = False, own_args: Mapping[str, Sequence[str]] | None = None
                  ) -> tuple[RunState, dict[str, subprocess.Popen]]:
    """Start every node of a topology and wait until all are ready.

    Refuses (LaunchError) when a node's address is already in use. ``fresh``: remove the
    plans an earlier run persisted in the run folder first (else the nodes restore them).
    On any failure (a node exits, or is not ready within ``ready_timeout_s``) the nodes
    already started are stopped and LaunchError carries the failing node's log tail.
    ``own_args``: node id -> arguments for that node only (after ``extra_node_args``).
    """
    topology_path = topology_path.resolve()
    topo: Topology = load_topology(topology_path)
    check_addresses_free(topo)
    run_dir = (run_dir or RUN_ROOT / topology_name(topology_path)).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        shutil.rmtree(run_dir / "state", ignore_errors=True)
    catalog = catalog.resolve() if catalog is not None else None
    plan = plan.resolve() if plan is not None else None
    token = token or secrets.token_urlsafe(24)
    token_file = write_token_file(run_dir, token)
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # the token travels by file only
    env["PYTHONUNBUFFERED"] = "1"
    procs: dict[str, subprocess.Popen] = {}
    nodes: dict[str, NodeProcess] = {}
    try:
        for nid, node in topo.nodes.items():
            log_path = run_dir / f"{nid}.log"
            cmd = node_command(topology_path, nid, run_dir / "state" / nid, catalog, plan, emulate,
                               [*extra_node_args, *(own_args or {}).get(nid, ())], token_file)
            with open(log_path, "w", encoding="utf-8") as log:
                log.write("$ " + " ".join(cmd) + "\n")
                log.flush()
                procs[nid] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                              env=env, start_new_session=True)
            nodes[nid] = NodeProcess(procs[nid].pid, node.address, node.tier, str(log_path))
        _wait_ready(nodes, procs, ready_timeout_s, on_wait)
        # Nodes that started before a neighbour saw it down; their health checks see it up
        # within one probe interval (idn.node.neighbours). Let them, so that the first
        # requests take the normal routes.
        time.sleep(SETTLE_S)
    except BaseException:
        stop_nodes(nodes, timeout_s=5.0, procs=procs)
        raise
    state = RunState(topology=str(topology_path), name=topology_name(topology_path), token=token,
                     run_dir=str(run_dir), nodes=nodes, emulate=emulate,
                     catalog=str(catalog.resolve()) if catalog is not None else None,
                     node_args=list(extra_node_args), own_args={k: list(v) for k, v in (own_args or {}).items()})
    return state, procs


def restart_node(state: RunState, node_id: str, ready_timeout_s: float = 60.0) -> subprocess.Popen:
    """Start one node of a running network again (after it died or was killed), as ``idn up``
    started it: same command, token, log (appended) and state folder, so it comes back with
    its last plan. Waits until it is ready; updates ``state`` with the new pid."""
    if pid_runs_node(state.nodes[node_id].pid, node_id):
        raise LaunchError(f"node {node_id!r} is still running (pid {state.nodes[node_id].pid})")
    run_dir = Path(state.run_dir)
    cmd = node_command(Path(state.topology), node_id, run_dir / "state" / node_id,
                       Path(state.catalog) if state.catalog else None, None, state.emulate,
                       [*state.node_args, *state.own_args.get(node_id, ())])
    env = dict(os.environ, **{TOKEN_ENV: state.token}, PYTHONUNBUFFERED="1")
    log_path = state.nodes[node_id].log
    with open(log_path, "a", encoding="utf-8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    old = state.nodes[node_id]
    state.nodes[node_id] = NodeProcess(proc.pid, old.address, old.tier, old.log)
    try:
        _wait_ready({node_id: state.nodes[node_id]}, {node_id: proc}, ready_timeout_s, None)
    except BaseException:
        stop_nodes({node_id: state.nodes[node_id]}, timeout_s=5.0, procs={node_id: proc})
        raise
    return proc


def _wait_ready(nodes: dict[str, NodeProcess], procs: dict[str, subprocess.Popen], timeout_s: float,
                on_wait: Callable[[str], None] | None) -> None:
    pending = set(nodes)
    deadline = time.monotonic() + timeout_s
    while pending:
        for nid in sorted(pending):
            rc = procs[nid].poll()
            if rc is not None:
                raise LaunchError(f"node {nid!r} exited with status {rc} before it was ready; "
                                  f"last lines of {nodes[nid].log}:\n{log_tail(nodes[nid].log)}")
            if server_ready(nodes[nid].address, timeout=0.5):
                pending.discard(nid)
                if on_wait:
                    on_wait(nid)
        if pending and time.monotonic() > deadline:
            nid = sorted(pending)[0]
            raise LaunchError(f"node(s) {sorted(pending)} not ready after {timeout_s:.0f} s; "
                              f"last lines of {nodes[nid].log}:\n{log_tail(nodes[nid].log)}")
        if pending:
            time.sleep(0.1)
    # Ready answers must have come from the processes started here: each one still runs and
    # (where /proc tells) is the one listening on its node's address.
    for nid, n in nodes.items():
        rc = procs[nid].poll()
        listener = pid_listening_on(n.address)
        if rc is not None or (listener is not None and listener != n.pid):
            who = f"exited with status {rc}" if rc is not None else f"is not the process on {n.address} " \
                                                                    f"({describe_pid(listener or 0)} is)"
            raise LaunchError(f"node {nid!r} {who}; last lines of {n.log}:\n{log_tail(n.log)}")
