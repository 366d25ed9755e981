"""LPIPS diversity: how different the images made for one prompt are from each other.

Formula (version ``v1``)::

    diversity(images) = mean over unordered pairs {i, j}, i != j, of LPIPS(images[i], images[j])

with LPIPS v0.1 (learned linear heads over a torchvision backbone). Higher is more diverse.
Images enter LPIPS as float RGB tensors in [-1, 1] (``pixel / 127.5 - 1``), the range the
lpips package expects.

Nothing is ever downloaded: the backbone comes from a local torchvision weights file or is
random (offline demo only); the linear heads ship with the lpips wheel.
"""

from __future__ import annotations

import functools
import itertools
import logging
import warnings
from pathlib import Path

import lpips
import numpy as np
import torch
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.models.checks import sha256_file
from t2ibench.seeding import seeded

FORMULA_VERSION = "v1"
LPIPS_VERSION = "0.1"

# lpips net name -> the torchvision model whose ``features`` state dict is the backbone
BACKBONES = {"alex": "alexnet", "vgg": "vgg16", "squeeze": "squeezenet1_1"}

log = logging.getLogger(__name__)


def to_lpips_tensor(image: Image.Image) -> torch.Tensor:
    """A (1, 3, H, W) float32 tensor in [-1, 1]: RGB ``pixel / 127.5 - 1``."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1


class LpipsScorer:
    """LPIPS distances between images and the mean pairwise distance of a group.

    Args:
        net: LPIPS backbone, one of ``alex``, ``vgg``, ``squeeze``.
        backbone_weights: path of the torchvision weights of that backbone (``alexnet``,
            ``vgg16`` or ``squeezenet1_1``, e.g. ``alexnet-owt-7be5be79.pth``; the whole model or
            just its ``features``), or ``""`` for a random backbone seeded with ``seed``
            (offline demo only: the distances mean nothing).
        device: torch device the model runs on.
        seed: seed of the random backbone when ``backbone_weights`` is ``""``.
        batch_size: image pairs per forward pass.
    """

    def __init__(
        self,
        net: str = "alex",
        backbone_weights: str = "",
        device: str = "cpu",
        seed: int = 0,
        batch_size: int = 16,
    ):
        if net not in BACKBONES:
            raise InputError(f"unknown LPIPS net '{net}': expected one of {sorted(BACKBONES)}")
        self.batch_size = batch_size
        self.device = torch.device(device)
        with seeded(seed), warnings.catch_warnings():
            # lpips calls torchvision's deprecated ``pretrained=`` argument; nothing downloads
            warnings.simplefilter("ignore", UserWarning)
            model = lpips.LPIPS(
                net=net, version=LPIPS_VERSION, lpips=True, pnet_rand=True, verbose=False
            )
        if backbone_weights:
            _load_backbone(model.net, Path(backbone_weights), net)
            backbone_id = f"sha256:{sha256_file(Path(backbone_weights))[:16]}"
        else:
            _warn_random_backbone(net)
            backbone_id = f"random:seed{seed}"
        self.model = model.to(self.device).eval()
        self._metric_id = f"lpips/{FORMULA_VERSION}/{net}-lin{LPIPS_VERSION}/{backbone_id}"

    @property
    def metric_id(self) -> str:
        """Stable cache key: formula version, net, heads version and backbone weights."""
        return self._metric_id

    def distance(self, a: Image.Image, b: Image.Image) -> float:
        """LPIPS(a, b) for two images of the same size."""
        return self._distances(to_lpips_tensor(a), to_lpips_tensor(b)).item()

    def diversity(self, images: list[Image.Image]) -> float:
        """Mean LPIPS over all unordered pairs of ``images``; NaN for fewer than 2 images."""
        if len(images) < 2:
            return float("nan")
        sizes = {image.size for image in images}
        if len(sizes) > 1:
            raise ValueError(f"LPIPS diversity needs images of one size, got {sorted(sizes)}")
        tensors = torch.cat([to_lpips_tensor(image) for image in images])
        pairs = torch.tensor(list(itertools.combinations(range(len(images)), 2)))
        distances = [
            self._distances(tensors[chunk[:, 0]], tensors[chunk[:, 1]])
            for chunk in pairs.split(self.batch_size)
        ]
        return torch.cat(distances).mean().item()

    @torch.inference_mode()
    def _distances(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-row LPIPS of two (N, 3, H, W) batches in [-1, 1], as a flat CPU tensor."""
        return self.model(a.to(self.device), b.to(self.device)).flatten().cpu()


def _load_backbone(backbone: torch.nn.Module, path: Path, net: str) -> None:
    """Load torchvision ``features`` weights into lpips' sliced copy of the backbone."""
    if not path.is_file():
        raise InputError(f"LPIPS backbone weights file not found: {path}")
    expected = f"a torchvision {BACKBONES[net]} state dict"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a bad weights file fails in many ways: report it in one line
        raise InputError(f"cannot read {path} as {expected}: {str(e)[:300]}") from e
    if not isinstance(state, dict):
        raise InputError(f"{path} holds a {type(state).__name__}, expected {expected}")
    features = {key.removeprefix("features."): value for key, value in state.items()}
    # lpips names the torchvision layer ``features.<i>.<param>`` as ``slice<k>.<i>.<param>``
    wanted = {key: key.split(".", 1)[1] for key in backbone.state_dict()}
    missing = [source for source in wanted.values() if source not in features]
    if missing:
        raise InputError(f"{path} is not {expected}: it lacks features.{missing[0]}")
    try:
        backbone.load_state_dict({key: features[source] for key, source in wanted.items()})
    except RuntimeError as e:
        raise InputError(f"{path} does not fit LPIPS {net}: {str(e)[:300]}") from e


@functools.cache
def _warn_random_backbone(net: str) -> None:
    log.warning("LPIPS uses a RANDOM %s backbone: demo only, distances are meaningless", net)
