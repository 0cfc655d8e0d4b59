"""The ``imagenet`` task's photographs: natural images that installed packages already ship.

Nothing is downloaded. Each photo is read from a file inside an installed wheel
(scikit-image's ``skimage/data``, scikit-learn's ``sklearn/datasets/images``,
matplotlib's ``mpl-data/sample_data``), checked against the sha256 recorded here, then
centre-cropped and resized to the task's input size (:func:`prepare`) and shipped in
``models/samples/``. Only the build reads the packages; everything after it reads the
shipped arrays.

Two roles, never mixed:

* ``check`` photos have an ImageNet subject. Each carries the set of classes that
  count as a right answer (a cat photo may fairly be a tabby, a tiger cat or an
  Egyptian cat); every variant must name one of them (``idn models verify``). They
  are also the held-out photos on which int8 variants' agreement with their FP32
  parent is measured, so none of them is ever used for calibration.
* ``calibration`` photos are only used to calibrate the int8 variants' activation
  ranges (natural scenes, textures, microscopy, astronomy: what a camera may send).

Licences: all public domain or CC0, except scikit-learn's two photos (CC BY 2.0, which
allows redistribution of a modified copy with credit: the credit is in ``credit``
and in models/README.md).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The task's input: every variant takes uint8 RGB [N, INPUT_SIZE, INPUT_SIZE, 3] (see
# models/README.md for why 224) and resizes in its own graph to its native resolution.
INPUT_SIZE = 224
# Centre crop of the short side before resizing, as EfficientNet's own evaluation does
# (crop_padding 32 at 224: 224 / (224 + 32) = 0.875).
CROP_FRACTION = 0.875


@dataclass(frozen=True)
class Photo:
    name: str
    package: str                 # the installed distribution's import name
    file: str                    # path inside the package
    sha256: str                  # of that file, so a changed photo is noticed
    licence: str
    credit: str
    role: str                    # "check" | "calibration"
    classes: tuple[int, ...] = ()  # check photos: ImageNet classes that count as right, the reference first
    # The square cut out before resizing: centre (fractions of height and width) and side
    # (fraction of the short side). Default: EfficientNet's centre crop. A photo whose
    # subject is small (the rocket between its towers) is cut closer, as a user would.
    crop: tuple[float, float, float] = (0.5, 0.5, CROP_FRACTION)

    @property
    def source(self) -> str:
        return f"{self.package}/{self.file}"


PHOTOS: tuple[Photo, ...] = (
    # --- check photos: an ImageNet subject, a set of acceptable classes ---
    Photo("chelsea", "skimage", "data/chelsea.png",
          "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
          "CC0", "Stefan van der Walt (scikit-image)", "check", (281, 282, 285)),     # tabby, tiger cat, Egyptian cat
    Photo("coffee", "skimage", "data/coffee.png",
          "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
          "CC0", "Rachel Michetti, courtesy of Pikolo Espresso Bar (scikit-image)", "check",
          (967, 968, 504)),                                                          # espresso, cup, coffee mug
    Photo("camera", "skimage", "data/camera.png",
          "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
          "CC0", "Lav Varshney (scikit-image)", "check", (872, 759)),                 # tripod, reflex camera
    Photo("china", "sklearn", "datasets/images/china.jpg",
          "8378025ad2519d649d02e32bd98990db4ab572357d9f09841c2fbfbb4fefad29",
          "CC BY 2.0", "danielbuechele on Flickr (scikit-learn sample image), cropped and resized", "check",
          # palace (it is the Summer Palace), monastery (a Buddhist temple)
          (698, 663)),
    Photo("rocket", "skimage", "data/rocket.jpg",
          "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
          # missile, projectile, space shuttle
          "public domain", "SpaceX (scikit-image)", "check", (657, 744, 812),
          crop=(0.6, 0.5, 0.5)),
    # --- calibration photos: int8 activation ranges only ---
    Photo("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
          "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
          "public domain (U.S. Navy photograph)", "matplotlib sample data", "calibration"),
    Photo("astronaut", "skimage", "data/astronaut.png",
          "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
          "public domain", "NASA (scikit-image)", "calibration"),
    Photo("flower", "sklearn", "datasets/images/flower.jpg",
          "a77f6ec41e353afdf8bdff2ea981b2955535d8d83294f8cfa49cf4e423dd5638",
          "CC BY 2.0", "vultilion on Flickr (scikit-learn sample image), cropped and resized", "calibration"),
    Photo("clock", "skimage", "data/clock_motion.png",
          "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
          "public domain", "Stefan van der Walt (scikit-image)", "calibration"),
    Photo("coins", "skimage", "data/coins.png",
          "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
          "no known copyright restrictions", "Brooklyn Museum (scikit-image)", "calibration"),
    Photo("hubble_deep_field", "skimage", "data/hubble_deep_field.jpg",
          "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
          "public domain", "NASA (scikit-image)", "calibration"),
    Photo("immunohistochemistry", "skimage", "data/ihc.png",
          "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
          "no known copyright restrictions", "scikit-image", "calibration"),
    Photo("retina", "skimage", "data/retina.jpg",
          "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
          "CC0", "Mikael Häggström (scikit-image)", "calibration"),
    Photo("brick", "skimage", "data/brick.png",
          "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
          "CC0", "CC0Textures (scikit-image)", "calibration"),
    Photo("grass", "skimage", "data/grass.png",
          "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
          "CC0", "linolafett on DeviantArt (scikit-image)", "calibration"),
    Photo("gravel", "skimage", "data/gravel.png",
          "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
          "CC0", "CC0Textures (scikit-image)", "calibration"),
)


def photos(role: str) -> list[Photo]:
    return [p for p in PHOTOS if p.role == role]


def source_path(photo: Photo) -> Path:
    """Where the installed package keeps the photo (found without importing the package)."""
    spec = importlib.util.find_spec(photo.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"photo {photo.name}: package {photo.package!r} is not installed "
                                "(it comes with the `zoo` extra: `make models`)")
    return Path(next(iter(spec.submodule_search_locations))) / photo.file


def read_photo(photo: Photo) -> np.ndarray:
    """The photo as uint8 RGB [H, W, 3] (grey images repeated over 3 channels, alpha dropped)."""
    from PIL import Image

    path = source_path(photo)
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != photo.sha256:
        raise ValueError(f"photo {photo.name}: {path} hashes to {actual}, expected {photo.sha256} "
                         "(the package changed its sample; check the photo and update idn/zoo/photos.py)")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def prepare(image: np.ndarray, crop: tuple[float, float, float] = (0.5, 0.5, CROP_FRACTION),
            size: int = INPUT_SIZE) -> np.ndarray:
    """A square crop (``crop``: centre y, centre x as fractions of the height and width, side as a
    fraction of the short side; kept inside the image), bicubic resize to ``size`` (Pillow,
    antialiased): what a client would do before sending a photo to the task."""
    from PIL import Image

    h, w = image.shape[:2]
    cy, cx, frac = crop
    side = int(round(min(h, w) * frac))
    top = min(max(int(round(cy * h - side / 2)), 0), h - side)
    left = min(max(int(round(cx * w - side / 2)), 0), w - side)
    square = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


def prepared(photo: Photo, size: int = INPUT_SIZE) -> np.ndarray:
    """``photo`` read from its package, cropped and resized: uint8 [size, size, 3]."""
    return prepare(read_photo(photo), photo.crop, size)


def _resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres) of float [H, W, C] to [size, size, C]; numpy only."""
    h, w = image.shape[:2]

    def axis(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        return lo, np.minimum(lo + 1, n_in - 1), (pos - lo).astype(np.float32)

    y0, y1, wy = axis(h)
    x0, x1, wx = axis(w)
    rows = image[y0] * (1 - wy)[:, None, None] + image[y1] * wy[:, None, None]
    return rows[:, x0] * (1 - wx)[None, :, None] + rows[:, x1] * wx[None, :, None]


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random view of a prepared photo (uint8 [S, S, 3] -> same shape): a crop of 30-100 % of
    its area (aspect 3:4 to 4:3) resized back, a horizontal flip half the time, and brightness,
    contrast and saturation each scaled by 0.75-1.25. Numpy only, so the views (and the int8
    calibration they feed) are the same wherever the same seed is used."""
    size = image.shape[0]
    area = rng.uniform(0.30, 1.0) * size * size
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    ch = int(min(size, round(np.sqrt(area / aspect))))
    cw = int(min(size, round(np.sqrt(area * aspect))))
    top, left = int(rng.integers(0, size - ch + 1)), int(rng.integers(0, size - cw + 1))
    x = image[top:top + ch, left:left + cw].astype(np.float32)
    if rng.uniform() < 0.5:
        x = x[:, ::-1]
    x = _resize_bilinear(x, size)
    x = x * rng.uniform(0.75, 1.25)                                   # brightness
    x = (x - x.mean()) * rng.uniform(0.75, 1.25) + x.mean()            # contrast
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * rng.uniform(0.75, 1.25) + grey                    # saturation
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def views(images: np.ndarray, per_image: int, rng: np.random.Generator) -> np.ndarray:
    """``per_image`` augmented views of each image, image by image: uint8 [len * per_image, S, S, 3]."""
    return np.stack([augment(im, rng) for im in images for _ in range(per_image)])
