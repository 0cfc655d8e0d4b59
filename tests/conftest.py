"""Fixtures: real nodes on ephemeral loopback ports, real ONNX models built per session."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from idn.node.authority import ModelControl
from idn.node.server import NodeConfig, NodeServer
from idn.node.settings import NodeSettings
from tests import onnx_models


class RunningNode:
    """A NodeServer on its own event loop in a background thread."""

    def __init__(self, config: NodeConfig):
        self.loop = asyncio.new_event_loop()
        self.server = NodeServer(config)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.call(self.server.start())

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @property
    def address(self) -> str:
        return self.server.address

    def stop(self) -> None:
        self.call(self.server.stop(grace=1.0))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("onnx")
    onnx_models.linear_classifier(d / "linear.onnx")
    for dt in onnx_models.ONNX_TYPES:
        onnx_models.identity(d / f"id_{dt}.onnx", dt, ["N", "M"])
    onnx_models.identity(d / "strings.onnx", "BYTES", ["N"])
    onnx_models.identity(d / "fixed.onnx", "FP32", [2, 3])
    onnx_models.failing_model(d / "failing.onnx")
    onnx_models.slow_model(d / "slow.onnx")
    return d


# The token of nodes started in explicit repository control (start_node(..., admin=True)).
TOKEN = "test-token"


def start_node(model_dir: Path, names: list[str], admin: bool = False, **settings) -> RunningNode:
    """A standalone node serving ``names``; ``admin``: repository control explicit, with TOKEN."""
    cfg = NodeConfig(listen="127.0.0.1:0", node_id="test-node",
                     models={n: model_dir / f"{n}.onnx" for n in names},
                     settings=NodeSettings(**settings), control_token=TOKEN if admin else None,
                     model_control=ModelControl.EXPLICIT if admin else ModelControl.NONE)
    return RunningNode(cfg)


@pytest.fixture(scope="module")
def node(model_dir) -> Iterator[RunningNode]:
    n = start_node(model_dir, ["linear", "strings", "fixed", "failing",
                               *(f"id_{dt}" for dt in onnx_models.ONNX_TYPES)], admin=True)
    yield n
    n.stop()
