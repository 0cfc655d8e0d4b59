"""One loaded variant: an ONNX Runtime session, its metadata, and admission control.

ONNX Runtime releases the GIL while it computes, so runs go to a worker pool and the
event loop keeps serving other models. A run that is predicted to take less than the
cost of a thread hand-off (tens of microseconds) runs inline on the loop instead: the
prediction is an exponentially weighted average of the measured time per sample,
so a variant moves between the two paths as its observed cost changes.

Admission sheds load instead of running it late: a request whose deadline cannot be
met is refused at once. The prediction: the requests admitted ahead of it times the
measured cost per run, over the worker threads, plus its own run (stretched by the
node's emulated slowdown); it must fit in ``ADMIT_HEADROOM`` of the time left. The
answer is RESOURCE_EXHAUSTED when the queue is the reason, DEADLINE_EXCEEDED when even
an idle node could not make it. A request that still waited in the worker queue past
its deadline is dropped there, not run. So at twice its capacity a node still serves
its capacity, what it accepts finishes in time, and its queues (and memory) stay
bounded (``benchmarks/overload.py``).
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
from idn.node.pacing import Pacer
from idn.node.settings import DEFAULT_MAX_BATCH, NodeSettings
from idn.protocol.status import DataPlaneError, InvalidInput, ModelFailed, Overloaded, Status, echo
from idn.protocol.tensors import ORT_TYPES, TensorMeta, to_wire_shape

PLATFORM = "onnx_onnxv1"
_EWMA = 0.2
# Admit a request only if its predicted wait + run fit in this share of the time it has
# left: the rest absorbs the estimate's error and the trip back to the caller.
ADMIT_HEADROOM = 0.7


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
                 executor: Executor | None = None, version: str = "1", profile_batch: int | None = None):
        """``profile_batch``: the batch limit the catalog's profile gives this variant
        (``Variant.batch_limit``), used when ``settings.max_batch`` is None (the default)."""
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
        # The most samples one merged run may take: an explicit setting wins, else the
        # catalog's profile, else the default for unprofiled models.
        self.max_batch = (settings.max_batch if settings.max_batch is not None
                          else profile_batch if profile_batch is not None else DEFAULT_MAX_BATCH)
        self.batchable = self.max_batch > 1 and all(
            m.shape and m.shape[0] == -1 for m in (*self.inputs, *self.outputs)) and not batch_dependent(self.path)
        runs = settings.runs_per_variant or settings.workers
        self.batcher = Batcher(self._execute, self.max_batch, runs) if self.batchable else None
        self.inflight = 0
        self._drained: asyncio.Event | None = None
        self.executor = executor
        self._us_per_sample: float | None = None  # None until measured: first runs go to the pool
        self._pacer = Pacer()  # emulated slowdown (settings.slowdown)
        self.last_work_s = 0.0
        self.shed = 0  # refused at admission: could not finish by the deadline
        self.expired = 0  # dropped in the worker queue: the deadline passed before a worker was free

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

    def run_sync(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None, batch: int = 1,
                 deadline: float | None = None) -> list[np.ndarray]:
        """Run the session and update the cost estimate (time inside ORT only, not the hand-off)."""
        if deadline is not None and time.monotonic() >= deadline:
            self.expired += 1
            raise DataPlaneError(f"model '{self.name}': the request's deadline passed while it waited for a "
                                 "worker; not run", Status.DEADLINE_EXCEEDED)
        return self._run_timed(feeds, outputs, batch)[0]

    def _run_timed(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None,
                   batch: int) -> tuple[list[np.ndarray], float, float]:
        """(result, wall s, CPU s of this thread): with one intra-op thread ORT computes on
        the calling thread, so its CPU time is the run's own work, without the time spent
        waiting for a core on a busy machine."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            result = self.session.run(list(outputs) if outputs else None, feeds)
        except Exception as e:  # ORT raises its own pybind exception types
            raise ModelFailed(f"model '{self.name}' failed in ONNX Runtime: {e}") from None
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        per_sample = wall * 1e6 / max(1, batch)
        est = self._us_per_sample
        self._us_per_sample = per_sample if est is None else est + _EWMA * (per_sample - est)
        return result, wall, cpu

    def admit(self, batch: int, deadline: float | None) -> None:
        """Refuse now what cannot finish in time (module docstring); a run counts stretched by
        the emulated slowdown (``settings.slowdown``)."""
        stretch = self.settings.slowdown
        if self.inflight >= self.settings.max_queue:
            raise Overloaded(f"model '{self.name}' has {self.inflight} requests admitted "
                             f"(limit {self.settings.max_queue}); retry later")
        est = self._us_per_sample
        if deadline is None or est is None:
            return
        own = est * batch * 1e-6
        parallel = 1 if own * 1e6 <= self.settings.inline_max_us else max(1, self.settings.workers)
        wait = self.inflight * own / parallel
        need = wait + own * max(stretch, 1.0)
        left = deadline - time.monotonic()
        if left * ADMIT_HEADROOM >= need:
            return
        self.shed += 1
        if left < own * max(stretch, 1.0):
            raise DataPlaneError(f"model '{self.name}' needs ~{own * max(stretch, 1.0) * 1e3:.1f} ms per run, "
                                 f"only {max(left, 0) * 1e3:.1f} ms of the deadline are left; not run",
                                 Status.DEADLINE_EXCEEDED)
        raise Overloaded(f"model '{self.name}' is overloaded: {self.inflight} requests ahead, predicted "
                         f"{wait * 1e3:.1f} ms wait + {own * max(stretch, 1.0) * 1e3:.1f} ms run > "
                         f"{left * 1e3:.1f} ms left of the deadline; refused rather than run late")

    async def run(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None, batch: int,
                  deadline: float | None = None) -> list[np.ndarray]:
        """Run with admission control: at most ``max_queue`` requests admitted at once, and only
        those that can finish by their deadline (``admit``)."""
        self.admit(batch, deadline)
        self.inflight += 1
        try:
            if self.batcher is not None and batch < self.max_batch:
                return await self.batcher.submit(feeds, outputs, batch)
            return await self._execute(feeds, outputs, batch, deadline)
        finally:
            self.inflight -= 1
            if self.inflight == 0 and self._drained is not None:
                self._drained.set()

    async def _execute(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None,
                       batch: int, deadline: float | None = None) -> list[np.ndarray]:
        """Inline when predicted cheaper than a thread hand-off, else in the worker pool."""
        est = self._us_per_sample
        if self.settings.slowdown <= 1.0:
            if est is not None and est * batch <= self.settings.inline_max_us:
                return self.run_sync(feeds, outputs, batch)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, self.run_sync, feeds, outputs, batch, deadline)
        return await self._execute_stretched(feeds, outputs, batch, deadline)

    async def _execute_stretched(self, feeds: dict[str, np.ndarray], outputs: Sequence[str] | None,
                                 batch: int, deadline: float | None) -> list[np.ndarray]:
        """Emulation of a box ``slowdown`` times slower: the run ends ``slowdown`` × its CPU
        time after it started (wall time where ORT computes on more than one thread)."""
        if deadline is not None and time.monotonic() >= deadline:
            return self.run_sync(feeds, outputs, batch, deadline)  # raises DEADLINE_EXCEEDED
        loop = asyncio.get_running_loop()
        result, wall, cpu = await loop.run_in_executor(self.executor, self._run_timed, feeds, outputs, batch)
        work = cpu if self.settings.intra_op_threads == 1 else wall
        self.last_work_s = work  # what the last stretched run was padded from (for tests and logs)
        await self._pacer.sleep(work * self.settings.slowdown - wall)
        return result

    async def drained(self) -> None:
        """Wait until no admitted request is still running (used before unloading)."""
        while self.inflight:
            self._drained = asyncio.Event()
            await self._drained.wait()
