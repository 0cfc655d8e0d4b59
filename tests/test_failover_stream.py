"""The node-side failure tests of test_failover.py with every node forwarding over
ModelStreamInfer streams (``--forward-stream``): a neighbour killed, hung or gone is routed
around, given up on early and come back to, exactly as with a ModelInfer call per forward."""

from __future__ import annotations

import contextlib
import os
import signal

import numpy as np
import pytest
import yaml

from idn.launcher import start_network, stop_nodes
from tests import test_failover as plain
from tests.network import toy_catalog

launched = plain.launched  # the same healing before every test, on this module's network


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("failover-stream")
    cat = toy_catalog(d / "cat")
    np.savez(cat.parent / "toy.npz", inputs=np.ones((8, 4), np.float32))
    doc = yaml.safe_load(cat.read_text())
    doc["tasks"]["toy"]["samples"] = "toy.npz"
    cat.write_text(yaml.safe_dump(doc))
    topo_path = plain.failover_topology(d)
    state, procs = start_network(topo_path, catalog=cat, emulate=True, run_dir=d / "run",
                                 extra_node_args=["--forward-stream"])
    try:
        yield plain.World(state, topo_path, cat)
    finally:
        for n in state.nodes.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(n.pid, signal.SIGCONT)
        stop_nodes(state.nodes, timeout_s=5, procs=procs)


test_kill_9_the_regional_node_loses_nothing_and_it_comes_back_within_a_second = \
    plain.test_kill_9_the_regional_node_loses_nothing_and_it_comes_back_within_a_second
test_a_hung_next_hop_is_given_up_on_early = plain.test_a_hung_next_hop_is_given_up_on_early
test_no_live_route_fails_fast_naming_the_dead_hop = plain.test_no_live_route_fails_fast_naming_the_dead_hop


def test_the_network_forwards_over_streams(world, launched):
    with open(world.state.nodes["edge-b"].log, encoding="utf-8") as log:
        assert "--forward-stream" in log.readline()  # the command line the node was started with
