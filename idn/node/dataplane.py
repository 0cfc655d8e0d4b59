"""The protocol-agnostic data plane: resolve, validate, decode, run, answer.

Transports (``grpc_service``) are thin adapters that turn wire messages into
``InferenceRequest`` and ``InferenceResponse`` back into wire messages; everything
that decides something lives here, so a second transport (HTTP/REST) or the
forwarding path reuses it unchanged. Tensor contents stay in their wire form in the
request (raw bytes or a typed ``contents`` object) until the target model is known:
unknown models are refused before any decoding work, and decoding happens once.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from idn import __version__
from idn.node.errors import InvalidInput, ModelNotFound
from idn.node.repository import ModelRepository, ModelState
from idn.node.runtime import PLATFORM, VariantRuntime
from idn.node.settings import NodeSettings
from idn.node.tensors import TensorMeta, decode_contents, decode_raw

SERVER_NAME = "idn"
EXTENSIONS = ("model_repository", "idn")


@dataclass(slots=True)
class InputTensor:
    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes | None = None
    contents: Any = None  # an object with the InferTensorContents fields (e.g. the proto)


@dataclass(slots=True)
class InferenceRequest:
    model_name: str
    model_version: str = ""
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: list[InputTensor] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class OutputTensor:
    name: str
    datatype: str
    data: np.ndarray


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str
    id: str
    parameters: dict[str, Any]
    outputs: list[OutputTensor]


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorMeta, ...]
    outputs: tuple[TensorMeta, ...]


class DataPlane:
    def __init__(self, repository: ModelRepository, settings: NodeSettings, executor: Executor | None,
                 node_id: str = ""):
        self.repository = repository
        self.settings = settings
        self.executor = executor
        self.node_id = node_id
        self.accepting = True

    # -- health and metadata ------------------------------------------------------------------

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.accepting and self.repository.ready()

    def server_metadata(self) -> tuple[str, str, tuple[str, ...]]:
        return SERVER_NAME, __version__, EXTENSIONS

    def runtime(self, name: str, version: str = "") -> VariantRuntime:
        rt = self.repository.get(name)
        if version and version != rt.version:
            raise ModelNotFound(f"model '{name}' has no version '{version}'; available: ['{rt.version}']")
        return rt

    def model_ready(self, name: str, version: str = "") -> bool:
        try:
            self.runtime(name, version)
            return True
        except ModelNotFound:
            return False

    def model_metadata(self, name: str, version: str = "") -> ModelMetadata:
        rt = self.runtime(name, version)
        return ModelMetadata(rt.name, (rt.version,), PLATFORM, rt.inputs, rt.outputs)

    # -- repository extension -----------------------------------------------------------------

    def repository_index(self, ready_only: bool = False) -> list[ModelState]:
        return self.repository.index(ready_only)

    async def load(self, name: str, source: bytes | None = None) -> None:
        await self.repository.load(name, source)

    async def unload(self, name: str) -> None:
        await self.repository.unload(name)

    # -- inference ----------------------------------------------------------------------------

    async def infer(self, request: InferenceRequest) -> InferenceResponse:
        t0 = time.perf_counter()
        rt = self.runtime(request.model_name, request.model_version)
        feeds, batch = self.decode_inputs(rt, request.inputs)
        if request.outputs:
            rt.check_outputs(request.outputs)
        arrays = await rt.run(feeds, request.outputs, batch)
        names = request.outputs or rt.output_names
        metas = {m.name: m for m in rt.outputs}
        outputs = [OutputTensor(n, metas[n].datatype, a) for n, a in zip(names, arrays)]
        params: dict[str, Any] = {"idn.variant": rt.name,
                                  "idn.server_us": int((time.perf_counter() - t0) * 1e6)}
        if self.node_id:
            params["idn.node"] = self.node_id
        return InferenceResponse(rt.name, rt.version, request.id, params, outputs)

    def decode_inputs(self, rt: VariantRuntime, inputs: list[InputTensor]) -> tuple[dict[str, np.ndarray], int]:
        """Validate against the model's signature and decode; returns feeds and the batch size."""
        if not inputs:
            raise InvalidInput(f"model '{rt.name}': the request has no inputs; expected {[m.name for m in rt.inputs]}")
        feeds: dict[str, np.ndarray] = {}
        batch = 1
        for t in inputs:
            rt.check_input(t.name, t.datatype, t.shape)
            if t.name in feeds:
                raise InvalidInput(f"model '{rt.name}': input '{t.name}' given more than once")
            if t.raw is not None:
                arr = decode_raw(t.name, t.datatype, t.shape, t.raw, self.settings.max_elements)
            elif t.contents is not None:
                arr = decode_contents(t.name, t.datatype, t.shape, t.contents, self.settings.max_elements)
            else:
                raise InvalidInput(f"input '{t.name}': no data (neither raw_input_contents nor contents)")
            feeds[t.name] = arr
            if t.shape:
                batch = max(batch, t.shape[0])
        rt.check_complete(list(feeds))
        return feeds, batch
