"""Torch modules for the zoo's families. Every module maps [batch, features] FP32 to
class probabilities [batch, classes], so all variants of a task export to one signature.

``forward`` ends in a softmax (what clients receive); ``logits`` is what training
optimises (cross-entropy on logits is numerically sounder than on probabilities).
"""

from __future__ import annotations

import torch
from torch import nn

from idn.zoo.specs import Architecture


class Dense(nn.Module):
    """A linear layer written as MatMul + Add rather than Gemm.

    ONNX Runtime's dynamic int8 quantizer handles MatMul but not Gemm (what
    ``nn.Linear`` exports to for 2-D inputs), so the MLPs use this instead.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        layer = nn.Linear(n_in, n_out)  # reuse torch's default initialisation
        self.weight = nn.Parameter(layer.weight.detach().t().contiguous())  # [in, out]
        self.bias = nn.Parameter(layer.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight) + self.bias


class Classifier(nn.Module):
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(x), dim=-1)


class MLP(Classifier):
    """``hidden=()`` is multinomial logistic regression."""

    def __init__(self, features: int, classes: int, hidden: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        width = features
        for h in hidden:
            layers += [Dense(width, h), nn.ReLU()]
            width = h
        layers.append(Dense(width, classes))
        self.net = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN2d(Classifier):
    """3x3 same-padding convolutions on the square image, 2x2 max-pool after the listed layers."""

    def __init__(self, features: int, classes: int, channels: list[int], pool_after: list[int], dense: list[int]):
        super().__init__()
        self.side = int(round(features ** 0.5))
        assert self.side * self.side == features, "cnn2d needs a square image"
        layers: list[nn.Module] = []
        c_in, side = 1, self.side
        for i, c in enumerate(channels):
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU()]
            if i in pool_after:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            c_in = c
        layers.append(nn.Flatten())
        width = c_in * side * side
        for h in dense:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, classes))
        self.net = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, 1, self.side, self.side))


class CNN1d(Classifier):
    """Same-padding 1-D convolutions, each followed by 2x max-pool but the last; then
    global average and max pooling (translation invariance: what the phase jitter needs)."""

    def __init__(self, features: int, classes: int, channels: list[int], kernels: list[int], dense: list[int]):
        super().__init__()
        self.length = features
        layers: list[nn.Module] = []
        c_in = 1
        for i, (c, k) in enumerate(zip(channels, kernels, strict=True)):
            layers += [nn.Conv1d(c_in, c, k, padding=k // 2), nn.ReLU()]
            if i < len(channels) - 1:
                layers.append(nn.MaxPool1d(2))
            c_in = c
        self.features_net = nn.Sequential(*layers)
        head: list[nn.Module] = []
        width = 2 * c_in
        for h in dense:
            head += [nn.Linear(width, h), nn.ReLU()]
            width = h
        head.append(nn.Linear(width, classes))
        self.head = nn.Sequential(*head)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features_net(x.reshape(-1, 1, self.length))
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.head(pooled)


def build_module(arch: Architecture, features: int, classes: int) -> Classifier:
    """Instantiate ``arch``; call under a fixed ``torch.manual_seed`` for reproducible weights."""
    if arch.family == "mlp":
        return MLP(features, classes, **arch.params)
    if arch.family == "cnn2d":
        return CNN2d(features, classes, **arch.params)
    if arch.family == "cnn1d":
        return CNN1d(features, classes, **arch.params)
    raise ValueError(f"unknown architecture family {arch.family!r}")
