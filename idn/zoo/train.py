"""Deterministic training of one variant with torch on the CPU.

Reproducibility: the weights depend only on the variant name (seeds derive from it),
the task's data (itself seeded), torch's version and the thread count, which is
pinned to ``TRAIN_THREADS`` because the order of floating-point reductions depends
on how work is split between threads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from idn.zoo.architectures import Classifier, build_module
from idn.zoo.datasets import TaskData, rng_for
from idn.zoo.specs import VariantSpec

TRAIN_THREADS = 2


def _seed_of(name: str) -> int:
    return int(rng_for(name, "torch-seed").integers(0, 2**31 - 1))


@dataclass(frozen=True)
class TrainResult:
    module: Classifier
    parameters: int
    seconds: float
    final_loss: float


def count_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def train_variant(spec: VariantSpec, data: TaskData, log: bool = False) -> TrainResult:
    """Train ``spec`` on ``data``: AdamW + cosine learning rate, cross-entropy on logits.

    Each epoch draws its data from ``data.epoch`` with an rng seeded by (task, epoch),
    so every variant of a task sees exactly the same training inputs.
    """
    assert spec.architecture is not None and spec.training is not None, f"{spec.name} is not a trained variant"
    torch.set_num_threads(TRAIN_THREADS)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(_seed_of(spec.name))
    module = build_module(spec.architecture, data.features, data.classes)
    cfg = spec.training
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    loss_fn = nn.CrossEntropyLoss()
    order_rng = torch.Generator().manual_seed(_seed_of(spec.name + "/order"))
    start = time.perf_counter()
    loss_value = float("nan")
    module.train()
    for epoch in range(cfg.epochs):
        x_np, y_np = data.epoch(rng_for(data.name, "epoch", str(epoch)))
        x, y = torch.from_numpy(np.ascontiguousarray(x_np)), torch.from_numpy(y_np)
        perm = torch.randperm(len(x), generator=order_rng)
        total, count = 0.0, 0
        for i in range(0, len(x), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(module.logits(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            count += len(idx)
        sched.step()
        loss_value = total / count
        if log:
            print(f"  {spec.name} epoch {epoch + 1}/{cfg.epochs} loss {loss_value:.4f}", flush=True)
    module.eval()
    return TrainResult(module, count_parameters(module), time.perf_counter() - start, loss_value)
