"""Per-set metrics: FID and KID between two sets of images, on features of a local network.

Both metrics compare the distributions of image features ``f(x)`` (one row per image) of two
sets ``A`` (n_a images) and ``B`` (n_b images), e.g. a model's images against a reference set.

FID, Fréchet Inception Distance (Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium"): the Fréchet (2-Wasserstein) distance between the
Gaussians fitted to the two feature sets::

    FID = ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))

with ``mu`` the feature means and ``S`` the sample covariances (ddof=1, as pytorch-fid,
clean-fid and torchmetrics). Lower is closer; 0 for identical statistics.

KID, Kernel Inception Distance (Bińkowski et al. 2018, "Demystifying MMD GANs"): the unbiased
estimate of the squared maximum mean discrepancy under the cubic polynomial kernel
``k(x, y) = (gamma x.y + coef)^degree`` (``gamma = 1/D``, ``coef = 1``, ``degree = 3``)::

    KID = sum_{i!=j} k(a_i, a_j) / (m (m-1)) + sum_{i!=j} k(b_i, b_j) / (n (n-1))
          - 2 sum_{i,j} k(a_i, b_j) / (m n)

Unbiased, so it can be slightly negative when the sets come from one distribution. As in
torchmetrics / clean-fid it is averaged over random subsets of at most ``subset_size`` images
of each set; here the subsets are drawn with a fixed seed, and when both sets fit in one subset
the whole sets are used once (no randomness at all).

Features come from one of two extractors, both fed through clean-fid's "clean" resize
(Parmar et al. 2022, "On Aliased Resizing and Surprising Subtleties in GAN Evaluation",
CVPR; https://github.com/GaParmar/clean-fid): each RGB channel resized as a float32 image
with PIL's (antialiased) bicubic filter, clipped to [0, 255], never quantised to uint8.

- ``inception``: the TorchScript Inception-v3 ``inception-2015-12-05.pt`` of StyleGAN2-ADA and
  clean-fid, the standard FID network (2048-d pool features). Input: float NCHW in [0, 255],
  299 x 299. With this extractor the numbers are comparable to published clean-fid FID/KID.
- ``clip``: an open_clip image encoder (unnormalised image embeddings, as clean-fid's FID-CLIP
  with CLIP ViT-B/32). Input: clean resize to the model's image size, then
  ``(x / 255 - mean) / std`` with the model's preprocessing mean and std.

Both FID and KID need many images: FID is biased upward for small sets (the bias shrinks
like 1/n) and its covariance is rank-deficient below ``D + 1`` images; see
``small_set_warning``. Nothing is ever downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.metrics.clip_score import OpenClipModel
from t2ibench.models.checks import sha256_file

# open_clip (seconds to import) is imported where it is used, so that DataLoader workers,
# which import this module to unpickle the transform, start fast

FEATURES_VERSION = "v1"
INCEPTION_SIZE = 299
INCEPTION_URL = (
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/"
    "inception-2015-12-05.pt"
)
EXTRACTORS = ("clip", "inception")

# Below this many images per set, FID and KID are too noisy to rank models (see small_set_warning)
MIN_IMAGES = 50


def clean_resize(image: Image.Image, size: int) -> np.ndarray:
    """clean-fid's "clean" resize of ``image`` to ``size x size``: (size, size, 3) float32 in
    [0, 255].

    Same as clean-fid's ``make_resizer("PIL", False, "bicubic", (size, size))`` applied to
    ``np.array(image.convert("RGB"))``: each channel becomes a float32 PIL image (mode ``F``),
    is resized with PIL's BICUBIC filter, and the stacked result is clipped to [0, 255] (the
    bicubic kernel overshoots at edges) but not rounded to uint8. The aspect ratio is not kept.

    Why: FID moves by several points with the resize alone (Parmar et al. 2022). Resizes
    without antialiasing (PyTorch / TensorFlow 1 bilinear) alias high frequencies, and a resize
    done in uint8 adds quantisation noise; PIL's bicubic widens its kernel with the downscale
    factor (antialiased) and the ``F`` mode keeps full precision.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(pixels[:, :, c])).resize(
                (size, size), resample=Image.Resampling.BICUBIC
            )
        )
        for c in range(3)
    ]
    return np.stack(channels, axis=2).clip(0, 255).astype(np.float32)


@dataclass(frozen=True)
class CleanTransform:
    """Picklable ``PIL.Image -> (3, size, size) float32 tensor``: the clean resize, then
    ``(x / 255 - mean) / std`` when ``mean`` and ``std`` are given, else ``x`` in [0, 255]."""

    size: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __call__(self, image: Image.Image) -> torch.Tensor:
        x = torch.from_numpy(clean_resize(image, self.size)).permute(2, 0, 1).contiguous()
        if self.mean is None or self.std is None:
            return x
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return (x / 255 - mean) / std


@dataclass(frozen=True)
class ClipCropTransform:
    """Picklable ``PIL.Image -> (3, size, size) float32 tensor``: clean-fid's preparation
    for its CLIP features (``img_preprocess_clip`` + ``CLIP_fx``).

    RGB (``Image.open(path).convert("RGB")``, as clean-fid's dataset does), shortest side
    resized to ``size`` with PIL's bicubic filter (torchvision ``Resize`` on a PIL image),
    ``CenterCrop(size)``, rounded to uint8, then ``(x / 255 - mean) / std``.
    """

    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as tf

        image = image.convert("RGB")
        image = tf.resize(image, self.size, interpolation=InterpolationMode.BICUBIC)
        image = tf.center_crop(image, [self.size, self.size])
        x = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
        x = x.to(torch.float32) / 255
        mean = torch.tensor(self.mean, dtype=torch.float32)[:, None, None]
        std = torch.tensor(self.std, dtype=torch.float32)[:, None, None]
        return (x - mean) / std


class ClipFeatures(OpenClipModel):
    """Unnormalised open_clip image embeddings as FID/KID features (arguments:
    OpenClipModel's).

    Unnormalised, like clean-fid's FID-CLIP (``model.encode_image`` of CLIP ViT-B/32): the
    embedding norm carries information, and FID assumes no particular scale. Images are
    prepared as clean-fid prepares them for its CLIP features (ClipCropTransform: shortest
    side resized, centre crop), so with CLIP ViT-B/32 weights the features are clean-fid's
    ``clip_vit_b_32`` ones.
    """

    def __init__(self, *args, **kwargs):
        import open_clip

        super().__init__(*args, **kwargs)
        cfg = self.model.visual.preprocess_cfg
        size = self.model.visual.image_size
        self.size = int(size if isinstance(size, int) else size[0])
        self.mean = tuple(float(v) for v in cfg["mean"])
        self.std = tuple(float(v) for v in cfg["std"])
        self.dim = int(open_clip.get_model_config(self.name)["embed_dim"])
        self.extractor_id = (
            f"fid-features/{FEATURES_VERSION}/clip/{self.model_id}/image-embeds/crop{self.size}"
        )

    def transform(self) -> ClipCropTransform:
        """clean-fid's CLIP preparation at the model's image size and mean/std."""
        return ClipCropTransform(self.size, self.mean, self.std)

    @torch.inference_mode()
    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, D) float64 CPU image embeddings of transformed pixels (N, 3, size, size)."""
        rows = [
            self.model.encode_image(chunk.to(self.device), normalize=False).double().cpu()
            for chunk in pixels.split(self.batch_size)
        ]
        return torch.cat(rows) if rows else torch.zeros(0, self.dim, dtype=torch.float64)


class TorchScriptFeatures:
    """Inception-v3 pool features (2048-d) from the TorchScript file ``inception-2015-12-05.pt``.

    The file of StyleGAN2-ADA, used by clean-fid: ``model(x, return_features=True)`` with
    ``x`` float NCHW in [0, 255]. The network resamples its input to 299 x 299 (bilinear
    ``grid_sample``, the identity for a 299 x 299 input) and normalises ``(x - 128) / 128``
    itself; here the input is already clean-resized to 299 x 299, which is clean-fid's "clean"
    mode. Like clean-fid, when the module has ``layers`` (the real file does), the identity
    resample is skipped: ``model.layers((x - 128) / 128)``, the exact numbers clean-fid gets.

    Args:
        path: the TorchScript file.
        device: torch device the model runs on.
        batch_size: images per forward pass.
    """

    size = INCEPTION_SIZE

    def __init__(self, path: str, device: str = "cpu", batch_size: int = 32):
        self.path = Path(path) if path else None
        if self.path is None or not self.path.is_file():
            raise InputError(
                f"FID feature extractor not found: {path or '(empty path)'} (download "
                f"inception-2015-12-05.pt from {INCEPTION_URL}; set metrics.fid.weights)"
            )
        self.batch_size = batch_size
        self.device = torch.device(device)
        expected = "a TorchScript module like inception-2015-12-05.pt (metrics.fid.weights)"
        try:
            self.model = torch.jit.load(str(self.path), map_location=self.device).eval()
        except Exception as e:  # not TorchScript: report it in one line
            raise InputError(f"cannot load {self.path} as {expected}: {str(e)[:300]}") from e
        try:
            probe = torch.zeros(1, 3, self.size, self.size)
            self.dim = int(self._forward(probe).shape[1])
        except Exception as e:
            raise InputError(
                f"{self.path} is not {expected}: model(x, return_features=True) on a "
                f"(1, 3, {self.size}, {self.size}) input failed: {str(e)[:300]}"
            ) from e
        digest = sha256_file(self.path)[:16]
        self.extractor_id = (
            f"fid-features/{FEATURES_VERSION}/torchscript/sha256:{digest}/clean{self.size}"
        )

    def transform(self) -> CleanTransform:
        """Clean resize to 299 x 299, values kept in [0, 255]."""
        return CleanTransform(self.size)

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        if hasattr(self.model, "layers"):
            out = self.model.layers((x - 128) / 128)
        else:
            out = self.model(x, return_features=True)
        return out.reshape(len(x), -1).double().cpu()

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, D) float64 CPU features of pixels (N, 3, 299, 299) in [0, 255]."""
        rows = [self._forward(chunk) for chunk in pixels.split(self.batch_size)]
        return torch.cat(rows) if rows else torch.zeros(0, self.dim, dtype=torch.float64)


def build_extractor(
    kind: str, model: str, weights: str, device: str = "cpu", batch_size: int = 32
) -> ClipFeatures | TorchScriptFeatures:
    """The feature extractor ``kind`` (metrics.fid.extractor): ``clip`` (open_clip ``model``
    with ``weights`` as its pretrained tag / file / "") or ``inception`` (TorchScript file
    ``weights``; ``model`` unused)."""
    if kind == "clip":
        return ClipFeatures(model, weights, device=device, batch_size=batch_size)
    if kind == "inception":
        return TorchScriptFeatures(weights, device=device, batch_size=batch_size)
    raise InputError(f"unknown metrics.fid.extractor '{kind}': expected one of {list(EXTRACTORS)}")


def set_features(
    paths: list[str], extractor, workers: int = 0, min_batches: int | None = None
) -> np.ndarray:
    """(len(paths), D) float64 features of the images at ``paths``, in path order.

    Decoding and the clean resize run in ``workers`` DataLoader processes when there are
    at least ``min_batches`` batches (see t2ibench.metrics.loader).
    """
    from t2ibench.metrics.loader import PARALLEL_BATCHES, decoded_batches

    if min_batches is None:
        min_batches = PARALLEL_BATCHES
    if not paths:
        return np.zeros((0, extractor.dim), dtype=np.float64)
    batches = decoded_batches(
        paths, extractor.transform(), extractor.batch_size, workers, min_batches
    )
    rows = [extractor.features(pixels).numpy() for pixels, _ in batches]
    return np.concatenate(rows).astype(np.float64)


def _check_sets(a: np.ndarray, b: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"{metric} needs two (N, D) feature arrays, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise InputError(f"{metric} needs at least 2 images in each set, got {len(a)} and {len(b)}")
    return a, b


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative rounding noise clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(values.clip(min=0))) @ vectors.T


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to features ``a`` (N_a, D) and ``b``.

    ``tr((S_a S_b)^(1/2))`` is computed in float64 as the sum of the square roots of the
    eigenvalues of the symmetric PSD matrix ``S_a^(1/2) S_b S_a^(1/2)``, which has the
    eigenvalues of ``S_a S_b``; tiny negative eigenvalues (rounding) are clipped to 0. This
    is stable for rank-deficient covariances (fewer images than dimensions), where a general
    ``sqrtm`` meets a singular product. The result is clipped at 0.
    """
    a, b = _check_sets(a, b, "FID")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(a, rowvar=False, ddof=1))
    cov_b = np.atleast_2d(np.cov(b, rowvar=False, ddof=1))
    root_a = _psd_sqrt(cov_a)
    product = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
    tr_covmean = np.sqrt(eigenvalues.clip(min=0)).sum()
    diff = mu_a - mu_b
    value = diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_covmean
    return max(float(value), 0.0)


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef: float) -> float:
    """Unbiased MMD^2 of x (m, D) and y (n, D) under (gamma x.y + coef)^degree."""
    m, n = len(x), len(y)
    k_xx = (gamma * (x @ x.T) + coef) ** degree
    k_yy = (gamma * (y @ y.T) + coef) ** degree
    k_xy = (gamma * (x @ y.T) + coef) ** degree
    xx = (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (n * (n - 1))
    return float(xx + yy - 2 * k_xy.sum() / (m * n))


def kid(
    a: np.ndarray,
    b: np.ndarray,
    degree: int = 3,
    gamma: float | None = None,
    coef: float = 1.0,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (unbiased polynomial-kernel MMD^2) of features ``a`` (N_a, D) and ``b``: (mean, std).

    When both sets have at most ``subset_size`` images, the whole sets are compared once:
    the estimate is deterministic and std is NaN. Otherwise ``subsets`` subsets of
    ``min(subset_size, N)`` images of each set, drawn without replacement by a numpy
    Generator seeded with ``seed``, are averaged; std is their (population, ddof=0) standard
    deviation, as torchmetrics reports it. ``gamma`` defaults to ``1 / D``. For two sets of
    equal size this is torchmetrics' ``KernelInceptionDistance`` formula; sets of unequal
    size use the general unbiased estimator (module docstring).
    """
    a, b = _check_sets(a, b, "KID")
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    if len(a) <= subset_size and len(b) <= subset_size:
        return _mmd2_unbiased(a, b, degree, gamma, coef), float("nan")
    rng = np.random.default_rng(seed)
    size_a, size_b = min(subset_size, len(a)), min(subset_size, len(b))
    scores = [
        _mmd2_unbiased(
            a[rng.choice(len(a), size_a, replace=False)],
            b[rng.choice(len(b), size_b, replace=False)],
            degree,
            gamma,
            coef,
        )
        for _ in range(subsets)
    ]
    return float(np.mean(scores)), float(np.std(scores))


def small_set_warning(n_a: int, n_b: int, dim: int) -> str:
    """A sentence for the results table when the sets are too small to trust, else "".

    - ``min(n) <= dim``: a covariance of n images has rank at most n - 1, so with fewer than
      ``dim + 1`` images it is singular and FID is strongly biased upward (its bias grows
      like 1/n; clean-fid and StyleGAN report FID on 50k images, a few thousand is the usual
      minimum). FIDs are then comparable only between sets of the same size; KID is unbiased.
    - ``min(n) < MIN_IMAGES`` (50): KID is unbiased but its variance grows like 1/n, so with a
      few dozen images the differences between models drown in the sampling noise of both
      metrics (Bińkowski et al. 2018 use subsets of 1000).
    """
    n = min(n_a, n_b)
    parts = []
    if n <= dim:
        parts.append(
            f"FID from {n_a} vs {n_b} images with {dim}-d features: covariance is "
            "rank-deficient, FID is biased upward; compare only sets of equal size, or use KID"
        )
    if n < MIN_IMAGES:
        parts.append(
            f"only {n} images in a set: FID and KID are too noisy to rank models "
            f"(use at least a few hundred images, thousands for FID)"
        )
    return "; ".join(parts)
