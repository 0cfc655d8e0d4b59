"""TLS and mutual TLS on the data plane, the control plane and between forwarding nodes."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from idn.client import Client, ControlClient
from idn.config import ConfigError
from idn.plan import plan_to_dict
from idn.tls import TLSFiles
from tests.certs import make_pki
from tests.conftest import RunningNode
from tests.network import Network, line_topology, make_plan, toy_catalog

X = {"input": np.ones((1, 4), np.float32)}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls(pki, who: str | None, ca: bool = True) -> TLSFiles:
    return TLSFiles.load(pki[who] if who else None, pki[f"{who}_key"] if who else None, pki["ca"] if ca else None)


def test_mutual_tls_between_clients_and_nodes_and_between_nodes(tmp_path, pki):
    net = Network(line_topology(tmp_path), toy_catalog(tmp_path / "cat"), tls=tls(pki, "node"))
    try:
        edge = net.address("edge")
        with Client(edge, tls=tls(pki, "client")) as c:
            r = c.infer("toy", X)  # no plan: edge -> regional -> cloud, every hop mutually authenticated
            assert (r.node, r.hops) == ("cloud", 2)
        with ControlClient(edge, net.token, tls=tls(pki, "client")) as cc:
            cc.apply_plan(json.dumps(plan_to_dict(make_plan(1, {"edge": ["toy-small"]}, [("edge", "toy-small", 1.0)]))))
            assert cc.info().plan_version == 1
        refused = {
            "plaintext": Client(edge, timeout=3),
            "no client certificate": Client(edge, timeout=3, tls=tls(pki, None)),
            "certificate from another CA": Client(edge, timeout=3, tls=TLSFiles.load(
                pki["stranger"], pki["stranger_key"], pki["ca"])),
        }
        for why, c in refused.items():
            with pytest.raises(grpc.RpcError) as e:
                c.infer("toy", X)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, why
            c.close()
    finally:
        net.close()


def test_server_only_tls(tmp_path, pki, model_dir):
    from idn.node.server import NodeConfig

    node = RunningNode(NodeConfig(listen="127.0.0.1:0", models={"linear": model_dir / "linear.onnx"},
                                  tls=TLSFiles.load(pki["node"], pki["node_key"])))
    try:
        with Client(node.address, tls=TLSFiles.load(ca=pki["ca"])) as c:  # verifies the server only
            assert c.infer("linear", X).outputs["label"].shape == (1,)
        with Client(node.address, timeout=3) as c, pytest.raises(grpc.RpcError):
            c.infer("linear", X)
    finally:
        node.stop()


def test_bad_tls_options_are_named(tmp_path, pki):
    with pytest.raises(ConfigError, match="--tls-key"):
        TLSFiles.load(cert=pki["node"])
    (tmp_path / "x.pem").write_text("not pem")
    with pytest.raises(ConfigError, match="not a PEM file"):
        TLSFiles.load(ca=tmp_path / "x.pem")
    assert TLSFiles.load() is None


def test_cli_node_and_infer_over_mutual_tls(tmp_path, pki):
    import os
    import subprocess
    import sys

    from tests.network import free_port

    port = free_port()
    cat = toy_catalog(tmp_path / "cat")
    proc = subprocess.Popen([sys.executable, "-m", "idn.cli", "node", "--listen", f"127.0.0.1:{port}",
                             "--catalog", str(cat), "--variant", "toy-small", "--tls-cert", str(pki["node"]),
                             "--tls-key", str(pki["node_key"]), "--tls-ca", str(pki["ca"])],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        for _ in range(200):
            line = proc.stdout.readline()
            if "listening on" in line or not line:
                break
        assert "listening on" in line, line
        np.save(tmp_path / "x.npy", np.ones(4, np.float32))
        args = [sys.executable, "-m", "idn.cli", "infer", "--to", f"127.0.0.1:{port}", "--task", "toy-small",
                "--input", str(tmp_path / "x.npy"), "--catalog", str(cat)]
        ok = subprocess.run([*args, "--tls-ca", str(pki["ca"]), "--tls-cert", str(pki["client"]),
                             "--tls-key", str(pki["client_key"])], capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0 and "toy-small" in ok.stdout, ok.stdout + ok.stderr
        bad = subprocess.run(args + ["--timeout", "3"], capture_output=True, text=True, timeout=60)
        assert bad.returncode != 0 and "UNAVAILABLE" in bad.stdout + bad.stderr
    finally:
        proc.terminate()
        proc.wait(10)
