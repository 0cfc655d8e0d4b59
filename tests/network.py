"""Building blocks for network tests: a toy catalog, loopback topologies, plans, nodes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import yaml

from idn.catalog import load_catalog
from idn.config import sha256_file
from idn.node.server import NodeConfig
from idn.node.settings import NodeSettings
from idn.plan import Plan, Route, SolverFacts, Target
from idn.topology import load_topology
from tests import onnx_models
from tests.conftest import RunningNode

HW = "test-hw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def toy_catalog(d: Path) -> Path:
    """Task `toy` ([N, 4] -> logits [N, 3], label [N]) with a small and a big variant."""
    d.mkdir(parents=True, exist_ok=True)
    variants = {}
    for name, seed, acc, ms in (("toy-small", 0, 0.80, 0.05), ("toy-big", 1, 0.95, 0.2)):
        path = onnx_models.linear_classifier(d / f"{name}.onnx", seed=seed)
        variants[name] = {
            "file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size, "parameters": 15,
            "flops_per_sample": 30, "accuracy": {"top1": acc, "split": "test", "samples": 100},
            "latency": {HW: {"single_thread": {1: {"p50_ms": ms, "p95_ms": ms * 2}}}}}
    doc = {"version": 1, "hardware_classes": {HW: {"description": "tests"}},
           "tasks": {"toy": {"description": "toy task",
                             "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}],
                             "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]},
                                         {"name": "label", "datatype": "INT64", "shape": [-1]}],
                             "variants": variants}}}
    p = d / "catalog.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def line_topology(d: Path, delays_ms: tuple[float, float] = (2.0, 2.0), name: str = "line3.yaml") -> Path:
    """cloud (repository) - regional - edge, on free loopback ports."""
    doc = {"hardware_class": HW, "nodes": [
        {"id": "cloud", "tier": "cloud", "address": f"127.0.0.1:{free_port()}", "mem_mb": 1024, "cores": 2,
         "repository": True},
        {"id": "regional", "tier": "regional", "address": f"127.0.0.1:{free_port()}", "mem_mb": 256, "cores": 1,
         "parent": "cloud"},
        {"id": "edge", "tier": "edge", "address": f"127.0.0.1:{free_port()}", "mem_mb": 64, "cores": 1,
         "parent": "regional", "slowdown": 2.0}],
        "links": [{"a": "cloud", "b": "regional", "delay_ms": delays_ms[0]},
                  {"a": "regional", "b": "edge", "delay_ms": delays_ms[1]}]}
    p = d / name
    p.write_text(yaml.safe_dump(doc))
    return p


def make_plan(version: int, placements: dict[str, list[str]], targets: list[tuple[str, str, float]],
              ingress: str = "edge", task: str = "toy") -> Plan:
    route = Route(class_id=f"{ingress}/{task}", ingress=ingress, task=task, rate=10.0,
                  targets=tuple(Target(n, v, s) for n, v, s in targets))
    return Plan(version=version, placements={n: tuple(v) for n, v in placements.items()},
                routes={route.class_id: route}, solver=SolverFacts("test", "heuristic"))


class Network:
    """Every node of a topology, each a RunningNode (own loop thread) in this process."""

    def __init__(self, topology: Path, catalog: Path, token: str = "secret", state_root: Path | None = None,
                 tls=None, **settings):
        self.topology_path = topology
        self.topology = load_topology(topology)
        self.catalog = load_catalog(catalog)
        self.token = token
        self.state_root = state_root
        self.tls = tls
        self.settings = settings
        self.nodes: dict[str, RunningNode] = {}
        for nid in self.topology.nodes:
            self.start(nid)
        self.wait_neighbours_up()

    def wait_neighbours_up(self, timeout_s: float = 5.0) -> None:
        """Until every node sees its running neighbours up (the first ones started saw the
        later ones down, and health checks take a moment to notice they came up)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not any(set(n.server.dataplane.forwarder.health.down) & set(self.nodes)
                       for n in self.nodes.values() if n.server.dataplane.forwarder is not None):
                return
            time.sleep(0.02)
        raise AssertionError("neighbours still down: " + str({nid: n.server.dataplane.forwarder.health.down
                                                               for nid, n in self.nodes.items()}))

    def config(self, nid: str, plan: Plan | None = None) -> NodeConfig:
        return NodeConfig(listen=self.topology.node(nid).address, node_id=nid, catalog=self.catalog,
                          topology=self.topology, control_token=self.token, emulate=True, plan=plan,
                          state_dir=(self.state_root / nid) if self.state_root else None,
                          settings=NodeSettings(**self.settings), tls=self.tls)

    def start(self, nid: str) -> RunningNode:
        self.nodes[nid] = RunningNode(self.config(nid))
        return self.nodes[nid]

    def address(self, nid: str) -> str:
        return self.topology.node(nid).address

    def stop(self, nid: str) -> None:
        self.nodes.pop(nid).stop()

    def close(self) -> None:
        for nid in list(self.nodes):
            self.stop(nid)
