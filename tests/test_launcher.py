"""`idn up` / `apply` / `status` / `down` as an operator runs them: real CLI, real node processes on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from idn.launcher import LaunchError, pid_runs_node, start_network, stop_nodes
from idn.plan import save_plan
from tests.network import line_topology, make_plan, toy_catalog

PLAN = make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]},
                 [("edge", "toy-small", 0.5), ("cloud", "toy-big", 0.5)])

def idn(cwd: Path, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    env.pop("IDN_CONTROL_TOKEN", None)
    p = subprocess.run([sys.executable, "-m", "idn.cli", *args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"idn {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p

@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    toy_catalog(tmp_path)
    line_topology(tmp_path)
    save_plan(PLAN, tmp_path / "plan.yaml")
    return tmp_path

def test_up_apply_status_down(workdir: Path):
    up = idn(workdir, "up", "line3.yaml", "--catalog", "catalog.yaml")
    state_path = workdir / ".idn/run/line3/state.json"
    state = json.loads(state_path.read_text())
    try:
        assert set(state["nodes"]) == {"cloud", "regional", "edge"}
        assert len(state["token"]) >= 20 and oct(state_path.stat().st_mode)[-3:] == "600"
        for nid, n in state["nodes"].items():
            assert pid_runs_node(n["pid"], nid)
            assert n["address"] in up.stdout and Path(n["log"]).is_file()
        # a second `up` of the same topology is refused while it runs
        again = idn(workdir, "up", "line3.yaml", "--catalog", "catalog.yaml", check=False)
        assert again.returncode == 1 and "already running" in again.stderr

        applied = idn(workdir, "apply", "line3.yaml", "plan.yaml", "--catalog", "catalog.yaml")
        assert "plan v1 applied" in applied.stdout and "toy-big" in applied.stdout
        # the same file again: re-versioned past what the nodes run, so it applies
        applied = idn(workdir, "apply", "line3.yaml", "plan.yaml", "--catalog", "catalog.yaml")
        assert "re-versioned to 2" in applied.stdout and "plan v2 applied" in applied.stdout

        status = idn(workdir, "status", "line3.yaml", "--window", "0.2")
        rows = {line.split("│")[1].strip(): line for line in status.stdout.splitlines() if line.startswith("│")}
        assert set(rows) == {"cloud", "regional", "edge"}
        assert "toy-small" in rows["edge"] and "toy-big" in rows["cloud"] and all("v2" in r for r in rows.values())

        wrong = idn(workdir, "status", "line3.yaml", "--token", "nope", "--window", "0", check=False)
        assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stdout
    finally:
        down = idn(workdir, "down")  # the only network up: no topology needed
    assert all(f"{nid}: stopped" in down.stdout for nid in state["nodes"])
    assert not state_path.exists()
    assert not any(pid_runs_node(n["pid"], nid) for nid, n in state["nodes"].items())

def test_a_node_that_cannot_start_stops_the_others_and_shows_its_log(workdir: Path):
    topo = workdir / "line3.yaml"

    doc = yaml.safe_load(topo.read_text())
    edge = next(n for n in doc["nodes"] if n["id"] == "edge")
    host, port = edge["address"].rsplit(":", 1)
    with socket.socket() as blocker:  # something answers at the edge's address: refused before starting
        blocker.bind((host, int(port)))
        blocker.listen()
        with pytest.raises(LaunchError) as e:
            start_network(topo, catalog=workdir / "catalog.yaml", run_dir=workdir / "run", ready_timeout_s=20)
        assert f"edge's address {host}:{port} is in use by pid {os.getpid()}" in str(e.value)
        assert not (workdir / "run" / "cloud.log").exists()  # nothing was started
    with socket.socket() as blocker:  # the edge's port is bound, not listening: its node fails to bind
        blocker.bind((host, int(port)))
        with pytest.raises(LaunchError) as e:
            start_network(topo, catalog=workdir / "catalog.yaml", run_dir=workdir / "run", ready_timeout_s=20)
    msg = str(e.value)
    assert "'edge'" in msg and "edge.log" in msg and "failed to bind" in msg.lower()  # its log tail
    for line in (workdir / "run" / "cloud.log", workdir / "run" / "regional.log"):
        assert line.is_file()
    # nothing left behind: every node that started was stopped
    leftovers = subprocess.run(["pgrep", "-f", str(workdir / "line3.yaml")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == ""

def test_stop_nodes_ignores_pids_that_are_not_our_node(workdir: Path):
    from idn.launcher import NodeProcess

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        outcome = stop_nodes({"edge": NodeProcess(other.pid, "127.0.0.1:1", "edge", "x.log")}, timeout_s=0.5)
        assert outcome == {"edge": "not running"} and other.poll() is None
    finally:
        other.kill()
        other.wait()
