"""One loaded variant: an ONNX Runtime session, its metadata, and admission control.

ONNX Runtime releases the GIL while it computes, so runs go to a worker pool and the
event loop keeps serving other models. A run that is predicted to take less than the
cost of a thread hand-off (tens of microseconds) runs inline on the loop instead: the
prediction is an exponentially weighted average of the measured time per sample,
so a variant moves between the two paths as its observed cost changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import onnxruntime as ort

from idn.node.batcher import Batcher
from idn.node.settings import NodeSettings
from idn.protocol.status import InvalidInput, ModelFailed, Overloaded, echo
from idn.protocol.tensors import ORT_TYPES, TensorMeta, to_wire_shape

PLATFORM = "onnx_onnxv1"
_EWMA = 0.2


def _metas(args: Sequence[ort.NodeArg]) -> tuple[TensorMeta, ...]:
    out = []
    for a in args:
        dt = ORT_TYPES.get(a.type)
        if dt is None:
            raise ValueError(f"tensor '{a.name}' has type {a.type}, which the Open Inference Protocol cannot carry")
        out.append(TensorMeta(a.name, dt, tuple(to_wire_shape(a.shape))))
    return tuple(out)


def batch_dependent(model: Path | bytes) -> bool:
    """Whether a row's answer depends on the other rows of its batch.

    Dynamically quantized models (onnxruntime's int8-dynamic) quantize activations with
    a scale computed over the whole batch, so merging requests would change answers.
    Op types are plain strings in the ONNX protobuf, so a byte search finds them.
    """
    data = model if isinstance(model, bytes) else Path(model).read_bytes()
    return b"DynamicQuantizeLinear" in data


class VariantRuntime:
    """An ONNX model ready to run, with a bounded number of admitted requests."""

    def __init__(self, name: str, path: str | Path | bytes, settings: NodeSettings,
                 executor: Executor | None = None, version: str = "1"):
        self.name = name
        self.version = version
        self.path = path if isinstance(path, bytes) else Path(path)
        self.settings = settings
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = settings.intra_op_threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(
            self.path if isinstance(self.path, bytes) else str(self.path),
            sess_options=opts, providers=list(settings.providers))
        self.inputs = _metas(self.session.get_inputs())
        self.outputs = _metas(self.session.get_outputs())
        self.input_by_name = {m.name: m for m in self.inputs}
        self.output_names = tuple(m.name for m in self.outputs)
        self.output_datatype = {m.name: m.datatype for m in self.outputs}
        self.batchable = settings.max_batch > 1 and all(
            m.shape and m.shape[0] == -1 for m in (*self.inputs, *self.outputs)) and not batch_dependent(self.path)
        self.batcher = Batcher(self._execute, settings.max_batch) if self.batchable else None
        self.inflight = 0
        self._drained: asyncio.Event | None = None
        self.executor = executor
        self._us_per_sample: float | None = None  # None until measured: first runs go to the pool

    # -- validation ---------------------------------------------------------------------------

    def check_input(self, name: str, datatype: str, shape: Sequence[int]) -> TensorMeta:
        meta = self.input_by_name.get(name)
        if meta is None:
            raise InvalidInput(f"model '{self.name}' has no input '{echo(name)}'; its inputs are "
                               f"{[m.name for m in self.inputs]}")
        if datatype != meta.datatype:
            raise InvalidInput(f"input '{name}' of model '{self.name}' expects datatype {meta.datatype}, "
                               f"got {echo(datatype)}")
        if len(shape) != len(meta.shape):
            raise InvalidInput(f"input '{name}' of model '{self.name}' expects shape {list(meta.shape)} "
                               f"(rank {len(meta.shape)}), got {echo(list(shape))}")
        for got, want in zip(shape, meta.shape):
            if want != -1 and got != want:
                raise InvalidInput(f"input '{name}' of model '{self.name}' expects shape {list(meta.shape)}, "
                                   f"got {echo(list(shape))}")
        return meta

    def check_complete(self, names: Sequence[str]) -> None:
        if len(names) != len(self.inputs) or set(names) != set(self.input_by_name):
            missing = [m.name for m in self.inputs if m.name not in names]
            dup = sorted({n for n in names if list(names).count(n) > 1})
            if dup:
                raise InvalidInput(f"model '{self.name}': input(s) {echo(dup)} given more than once")
            raise InvalidInput(f"model '{self.name}': missing input(s) {missing}")

    def check_outputs(self, names: Sequence[str]) -> None:
        for n in names:
            if n not in self.output_names:
                raise InvalidInput(f"model '{self.name}' has no output '{echo(n)}'; "
                                   f"its outputs are {list(self.output_names)}")

    # -- execution ----------------------------------------------------------------------------

    def run_sync(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None, batch: int = 1) -> list[np.ndarray]:
        """Run the session and update the cost estimate (time inside ORT only, not the hand-off)."""
        t0 = time.perf_counter()
        try:
            result = self.session.run(list(outputs) if outputs else None, feeds)
        except Exception as e:  # ORT raises its own pybind exception types
            raise ModelFailed(f"model '{self.name}' failed in ONNX Runtime: {e}") from None
        per_sample = (time.perf_counter() - t0) * 1e6 / max(1, batch)
        est = self._us_per_sample
        self._us_per_sample = per_sample if est is None else est + _EWMA * (per_sample - est)
        return result

    async def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None, batch: int) -> list[np.ndarray]:
        """Run with admission control: at most ``max_queue`` requests admitted at once."""
        if self.inflight >= self.settings.max_queue:
            raise Overloaded(f"model '{self.name}' has {self.inflight} requests admitted "
                             f"(limit {self.settings.max_queue}); retry later")
        self.inflight += 1
        try:
            if self.batcher is not None and batch < self.settings.max_batch:
                return await self.batcher.submit(feeds, outputs, batch)
            return await self._execute(feeds, outputs, batch)
        finally:
            self.inflight -= 1
            if self.inflight == 0 and self._drained is not None:
                self._drained.set()

    async def _execute(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None,
                       batch: int) -> list[np.ndarray]:
        """Inline when predicted cheaper than a thread hand-off, else in the worker pool."""
        est = self._us_per_sample
        if est is not None and est * batch <= self.settings.inline_max_us:
            return self.run_sync(feeds, outputs, batch)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.run_sync, feeds, outputs, batch)

    async def drained(self) -> None:
        """Wait until no admitted request is still running (used before unloading)."""
        while self.inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
