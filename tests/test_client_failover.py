"""Client failover, pure: the policy and the addresses a topology gives (the clients against real
node processes, one killed: tests/test_failover.py)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from idn.client import Failover, ingress_addresses
from idn.topology import load_topology
from tests.test_failover import failover_topology

X = {"input": np.ones((1, 4), np.float32)}


class Err(grpc.RpcError):
    def __init__(self, code, details):
        self._c, self._d = code, details

    def code(self):
        return self._c

    def details(self):
        return self._d


def test_failover_policy():
    now = [0.0]
    fo = Failover(["a", "b", "c"], clock=lambda: now[0], retry_after_s=0.5)
    refused = Err(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; last error: Connection refused")
    lost = Err(grpc.StatusCode.UNAVAILABLE, "Stream removed (Socket closed)")
    answered = Err(grpc.StatusCode.UNAVAILABLE, "via regional: regional is down")
    assert fo.should_retry(refused) and not fo.should_retry(lost) and not fo.should_retry(answered)
    assert not fo.should_retry(Err(grpc.StatusCode.INVALID_ARGUMENT, "bad input"))
    assert Failover("a", retry_sent=True).should_retry(lost)  # the caller opted in
    fo.failed("a")
    assert fo.order() == ["b", "c", "a"]  # skipped for a while, never dropped
    now[0] = 0.6
    assert fo.order() == ["a", "b", "c"]  # and tried first again: traffic returns to the nearest
    with pytest.raises(ValueError):
        Failover([])


def test_ingress_addresses_nearest_first(tmp_path):
    t = load_topology(failover_topology(tmp_path))
    addr = {n: t.node(n).address for n in t.nodes}
    assert ingress_addresses(t, "edge-b") == [addr["edge-b"], addr["regional"], addr["edge-a"], addr["cloud"]]
    assert ingress_addresses(t, "edge-b", 2) == [addr["edge-b"], addr["regional"]]
