"""Operations that used to leave a user stuck: restarting a node from its log, `down` finding it, `up`
refusing an address in use and saying when it restores plans, errors that name the node, TLS mismatches,
an ingress that is down."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from idn.cli import app
from idn.launcher import pid_runs_node, server_ready
from idn.plan import save_plan
from idn.tls import TLSFiles
from tests.certs import make_pki
from tests.network import Network, line_topology, make_plan, toy_catalog
from tests.test_launcher import idn

PLAN = make_plan(1, {"edge": ["toy-small"], "cloud": ["toy-big"]},
                 [("edge", "toy-small", 0.5), ("cloud", "toy-big", 0.5)])


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    toy_catalog(tmp_path)
    line_topology(tmp_path)
    save_plan(PLAN, tmp_path / "plan.yaml")
    return tmp_path


def _wait(cond, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _restart_from_log(workdir: Path, log: Path) -> subprocess.Popen:
    """Run the node's logged command line as it stands, in a clean environment (no token variable)."""
    first = log.read_text().splitlines()[0]
    assert first.startswith("$ ")
    env = {k: v for k, v in os.environ.items() if k != "IDN_CONTROL_TOKEN"}
    return subprocess.Popen(shlex.split(first[2:]), cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def test_restart_from_the_log_line_then_down_up_restore_fresh(workdir: Path):
    up = idn(workdir, "up", "line3.yaml", "--catalog", "catalog.yaml")
    assert "restoring" not in up.stderr
    state_path = workdir / ".idn/run/line3/state.json"
    state = json.loads(state_path.read_text())
    edge = state["nodes"]["edge"]
    hand: subprocess.Popen | None = None
    try:
        idn(workdir, "apply", "line3.yaml", "plan.yaml", "--catalog", "catalog.yaml")
        # the log's first line restarts the node as it was: the token comes from the run's file, never printed
        first = Path(edge["log"]).read_text().splitlines()[0]
        assert "--control-token-file" in first and state["token"] not in first
        token_file = Path(state["run_dir"]) / "token"
        assert oct(token_file.stat().st_mode)[-3:] == "600" and token_file.read_text().strip() == state["token"]
        for n in state["nodes"].values():
            assert state["token"] not in Path(n["log"]).read_text()
        os.kill(edge["pid"], signal.SIGTERM)
        _wait(lambda: not pid_runs_node(edge["pid"], "edge"))
        hand = _restart_from_log(workdir, Path(edge["log"]))
        _wait(lambda: server_ready(edge["address"]))
        status = idn(workdir, "status", "line3.yaml", "--window", "0")  # control works: same token
        assert "v1" in status.stdout and "UNAUTHENTICATED" not in status.stdout
        idn(workdir, "apply", "line3.yaml", "plan.yaml", "--catalog", "catalog.yaml")
        # `up` sees the hand-started node by its address
        again = idn(workdir, "up", "line3.yaml", "--catalog", "catalog.yaml", check=False)
        assert again.returncode == 1 and "already running" in again.stderr and "edge" in again.stderr
        # a wrong token: the error names the node, its address, what it was doing and what to do
        wrong = idn(workdir, "apply", "line3.yaml", "plan.yaml", "--catalog", "catalog.yaml", "--token", "nope",
                    check=False)
        text = " ".join(wrong.stderr.split())
        assert wrong.returncode == 1 and "plan.yaml not applied: node cloud (127.0.0.1:" in text
        assert "UNAUTHENTICATED" in text and "(fix: this control token is not the node's" in text
    finally:
        down = idn(workdir, "down")
    if hand is not None:
        assert f"edge: stopped: pid {hand.pid} (found by its address {edge['address']})" in down.stdout
        hand.wait(10)
    assert not state_path.exists()

    # the next `up` says it restores the plans the last run left (v2), and does
    up = idn(workdir, "up", "line3.yaml", "--catalog", "catalog.yaml")
    try:
        assert "restoring the plans an earlier run left" in up.stderr and "v2" in up.stderr and "--fresh" in up.stderr
        assert "v2" in idn(workdir, "status", "line3.yaml", "--window", "0").stdout
        edge_log = Path(json.loads(state_path.read_text())["nodes"]["edge"]["log"])
    finally:
        idn(workdir, "down")

    # a node left running with no state (an orphan) holds its address: `up` names it instead of racing it
    orphan = _restart_from_log(workdir, edge_log)
    try:
        _wait(lambda: server_ready(edge["address"]))
        refused = idn(workdir, "up", "line3.yaml", "--catalog", "catalog.yaml", check=False)
        text = " ".join(refused.stderr.split())
        assert refused.returncode == 1 and f"edge's address {edge['address']} is in use by pid {orphan.pid}" in text
        assert "--id edge" in text
    finally:
        orphan.terminate()
        orphan.wait(10)

    # --fresh: no plan restored
    up = idn(workdir, "up", "line3.yaml", "--catalog", "catalog.yaml", "--fresh")
    try:
        assert "restoring" not in up.stderr
        rows = [ln for ln in idn(workdir, "status", "line3.yaml", "--window", "0").stdout.splitlines() if "│" in ln]
        assert rows and all("v1" not in r and "v2" not in r for r in rows)
    finally:
        idn(workdir, "down")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def test_tls_options_and_a_plaintext_tls_mismatch_says_so(tmp_path, pki):
    topo = line_topology(tmp_path)
    cat = toy_catalog(tmp_path / "cat")
    runner = CliRunner()
    base = ["status", str(topo), "--token", "secret", "--window", "0", "--state", str(tmp_path / "none.json")]
    client_tls = ["--tls-ca", str(pki["ca"]), "--tls-cert", str(pki["client"]), "--tls-key", str(pki["client_key"])]
    net = Network(topo, cat, tls=TLSFiles.load(pki["node"], pki["node_key"], pki["ca"]))
    try:
        r = runner.invoke(app, base)
        text = " ".join(r.output.split())
        assert r.exit_code == 1 and "the node serves TLS and this command spoke plaintext: pass --tls-ca" in text
        r = runner.invoke(app, [*base, *client_tls])
        assert r.exit_code == 0, r.output
        save_plan(PLAN, tmp_path / "plan.yaml")
        r = runner.invoke(app, ["apply", str(topo), str(tmp_path / "plan.yaml"), "--catalog", str(cat), "--token",
                                "secret", "--state", str(tmp_path / "none.json"), *client_tls])
        assert r.exit_code == 0 and "plan v1 applied" in r.output, r.output
    finally:
        net.close()
    net = Network(topo, cat)
    try:
        r = runner.invoke(app, [*base, *client_tls])
        text = " ".join(r.output.split())
        assert r.exit_code == 1 and "serves plaintext and this command spoke TLS" in text
    finally:
        net.close()


def test_loadgen_names_the_ingress_that_is_down(tmp_path):
    topo = line_topology(tmp_path)
    cat = toy_catalog(tmp_path / "cat")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "cat" / "samples.npz", inputs=rng.random((8, 4), dtype=np.float32),
             labels=rng.integers(0, 3, 8))
    doc = yaml.safe_load(cat.read_text())
    doc["tasks"]["toy"]["samples"] = "samples.npz"
    cat.write_text(yaml.safe_dump(doc))
    (tmp_path / "demand.yaml").write_text(yaml.safe_dump({"classes": [
        {"ingress": "edge", "task": "toy", "rate": 5}, {"ingress": "regional", "task": "toy", "rate": 5}]}))
    net = Network(topo, cat)
    try:
        net.stop("edge")
        edge = net.address("edge")
        r = CliRunner().invoke(app, ["loadgen", "--topology", str(topo), "--demand", str(tmp_path / "demand.yaml"),
                                     "--catalog", str(cat), "--duration", "0.5", "--timeout", "1"])
        text = " ".join(r.output.split())
        assert r.exit_code == 1 and "1 ingress(es)" in text and f"edge ({edge}, classes edge/toy)" in text
        assert "nothing answers there" in text and "regional (" not in text
    finally:
        net.close()
