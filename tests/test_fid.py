"""FID / KID against torchmetrics on the same (tiny open_clip) features, the clean resize,
the TorchScript extractor, small-set warnings and parallel feature extraction."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from t2ibench.errors import InputError
from t2ibench.metrics.fid import (
    ClipFeatures,
    TorchScriptFeatures,
    build_extractor,
    clean_resize,
    fid,
    kid,
    set_features,
    small_set_warning,
)

TINY = Path(__file__).resolve().parents[1] / "config" / "models" / "open_clip-tiny.json"


def _noisy(rng, n: int, sizes=((64, 64), (80, 96))) -> list[Image.Image]:
    """Uniform noise plus a random colour gradient, in several sizes."""
    images = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        ramp = np.linspace(0, 1, w)[None, :, None] * rng.uniform(0, 255, 3)
        noise = rng.uniform(0, 255, (h, w, 3))
        images.append(Image.fromarray((0.5 * ramp + 0.5 * noise).astype(np.uint8)))
    return images


def _blobs(rng, n: int) -> list[Image.Image]:
    """Smooth coloured discs on flat backgrounds: another distribution than _noisy."""
    yy, xx = np.mgrid[:64, :64]
    images = []
    for _ in range(n):
        cy, cx, r = rng.uniform(10, 54), rng.uniform(10, 54), rng.uniform(5, 25)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2)[:, :, None]
        array = np.where(disc, rng.integers(0, 256, 3), rng.integers(0, 256, 3))
        images.append(Image.fromarray(array.astype(np.uint8)))
    return images


@pytest.fixture(scope="module")
def clip() -> ClipFeatures:
    return ClipFeatures(str(TINY))


@pytest.fixture(scope="module")
def pixel_sets(clip):
    """~40 vs 30 images, transformed once: what both implementations are fed."""
    rng = np.random.default_rng(0)
    transform = clip.transform()
    a = torch.stack([transform(image) for image in _noisy(rng, 40)])
    b = torch.stack([transform(image) for image in _blobs(rng, 30)])
    return a, b


class _Encoder(torch.nn.Module):
    """The ClipFeatures network for torchmetrics: transformed float pixels -> float64 features.

    torchmetrics' FID probes a custom module with a uint8 dummy image to find its feature
    size, so the input is cast to float (the values of the dummy do not matter)."""

    def __init__(self, extractor: ClipFeatures):
        super().__init__()
        self.model = extractor.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x.float(), normalize=False).double()


# --- FID / KID against torchmetrics on the same extractor ---


def test_fid_matches_torchmetrics(clip, pixel_sets):
    a, b = pixel_sets
    reference = FrechetInceptionDistance(feature=_Encoder(clip), input_img_size=(3, 64, 64))
    reference.update(a, real=True)
    reference.update(b, real=False)
    expected = reference.compute().item()
    got = fid(clip.features(a).numpy(), clip.features(b).numpy())
    assert clip.dim == 32 and expected > 0.1  # 30 images < 32 dims: rank-deficient, still equal
    assert got == pytest.approx(expected, rel=1e-3)


def test_kid_matches_torchmetrics_on_whole_sets(clip, pixel_sets):
    a, b = pixel_sets[0][:30], pixel_sets[1]  # torchmetrics' KID needs equal subset sizes
    reference = KernelInceptionDistance(feature=_Encoder(clip), subsets=1, subset_size=30)
    reference.update(a, real=True)
    reference.update(b, real=False)
    expected = reference.compute()[0].item()
    mean, std = kid(clip.features(a).numpy(), clip.features(b).numpy())
    assert expected > 0
    assert mean == pytest.approx(expected, rel=1e-5)
    assert np.isnan(std)  # one subset: the whole sets


def test_kid_unequal_sizes_is_the_unbiased_estimator():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 3)), rng.normal(0.5, 1, size=(5, 3))

    def k(x, y):
        return (x @ y / 3 + 1) ** 3

    xx = sum(k(a[i], a[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(x, y) for x in a for y in b) / (7 * 5)
    assert kid(a, b)[0] == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


# --- FID / KID properties ---


def test_fid_zero_for_same_set_and_shift_squared_for_shifted():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 8)) @ rng.normal(size=(8, 8))
    shift = np.arange(8) / 4
    assert abs(fid(a, a)) < 1e-8
    assert fid(a, a + shift) == pytest.approx(shift @ shift, rel=1e-8)
    assert fid(a, a + 2 * shift) > fid(a, a + shift)


def test_fid_matches_scipy_sqrtm_formula():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(100, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(1, 2, size=(80, 6)) @ rng.normal(size=(6, 6))
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    diff = a.mean(0) - b.mean(0)
    covmean = linalg.sqrtm(s_a @ s_b).real
    expected = diff @ diff + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean)
    assert fid(a, b) == pytest.approx(expected, rel=1e-9)


def test_kid_near_zero_for_one_distribution_positive_for_shifted():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    shifted = kid(a, b + 0.5)[0]
    assert shifted > 0.05
    assert abs(kid(a, b)[0]) < 0.02 * shifted
    # the same images twice are not independent samples: the estimate is slightly negative
    # (the diagonal k(x, x) is left out of the within-set terms, not of the cross term)
    assert -0.1 * shifted < kid(a, a)[0] < 0


def test_kid_subsets_deterministic_with_spread():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(120, 4)), rng.normal(0.3, 1, size=(90, 4))
    mean, std = kid(a, b, subsets=20, subset_size=50)
    assert (mean, std) == kid(a, b, subsets=20, subset_size=50)
    assert std > 0 and mean == pytest.approx(kid(a, b)[0], abs=3 * std)


def test_too_few_images_is_input_error():
    with pytest.raises(InputError, match="at least 2 images"):
        fid(np.zeros((1, 4)), np.zeros((5, 4)))


# --- clean resize ---


def _reference_clean(image: Image.Image, size: int, clip: bool = True) -> np.ndarray:
    pixels = np.asarray(image.convert("RGB")).astype(np.float32)
    channels = []
    for c in range(3):
        channel = Image.fromarray(pixels[:, :, c].copy(), mode="F")
        channels.append(np.asarray(channel.resize((size, size), Image.Resampling.BICUBIC)))
    out = np.stack(channels, axis=-1)
    return out.clip(0, 255) if clip else out


def test_clean_resize_is_per_channel_float_bicubic_clipped():
    checker = (np.indices((8, 8)).sum(0) % 2 * 255).astype(np.uint8)
    images = [
        Image.fromarray(np.stack([checker, 255 - checker, checker], -1)).resize((16, 16)),
        *_noisy(np.random.default_rng(3), 2),
        Image.fromarray(np.random.default_rng(4).integers(0, 256, (72, 64), dtype=np.uint8)),
    ]
    for image in images:
        for size in (64, 299, 33):
            out = clean_resize(image, size)
            assert out.shape == (size, size, 3) and out.dtype == np.float32
            np.testing.assert_array_equal(out, _reference_clean(image, size))
    # bicubic overshoots at the checkerboard's edges: clean-fid clips to [0, 255]
    assert _reference_clean(images[0], 64, clip=False).max() > 255
    assert clean_resize(images[0], 64).max() == 255


def test_clean_resize_differs_from_uint8_resize():
    image = _noisy(np.random.default_rng(5), 1, sizes=((128, 128),))[0]
    clean = clean_resize(image, 50)
    quantised = np.asarray(image.resize((50, 50), Image.Resampling.BICUBIC)).astype(np.float32)
    assert not np.array_equal(clean, np.round(clean))  # not quantised
    assert np.abs(clean - quantised).max() > 0.2


# --- the TorchScript (Inception) extractor ---


class _Probe(torch.nn.Module):
    """Stands in for inception-2015-12-05.pt: checks its input, returns channel means/maxima."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[2] != 299 or x.shape[3] != 299:
            raise RuntimeError("expected (N, 3, 299, 299)")
        if bool(x.min() < 0) or bool(x.max() > 255):
            raise RuntimeError("expected values in [0, 255]")
        if not return_features:
            return torch.full((x.shape[0], 1008), -1.0)
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)


def test_torchscript_extractor_feeds_clean_299_in_0_255(tmp_path):
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(_Probe()), str(path))
    extractor = build_extractor("inception", "", str(path), "cpu", 2)
    assert isinstance(extractor, TorchScriptFeatures) and extractor.dim == 6
    assert "sha256:" in extractor.extractor_id and "clean299" in extractor.extractor_id
    images = [*_noisy(np.random.default_rng(6), 2), Image.new("RGB", (40, 30), (250, 3, 128))]
    transform = extractor.transform()
    got = extractor.features(torch.stack([transform(image) for image in images]))
    assert got.dtype == torch.float64 and got.shape == (3, 6)
    for row, image in zip(got.numpy(), images, strict=True):
        resized = clean_resize(image, 299).astype(np.float64)
        expected = np.concatenate([resized.mean(axis=(0, 1)), resized.max(axis=(0, 1))])
        np.testing.assert_allclose(row, expected, rtol=1e-5)
    assert got[2, 3] == pytest.approx(250)  # [0, 255], not [0, 1]


class _Layers(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _WithLayers(torch.nn.Module):
    """Like the real file: forward(x, return_features) normalises and calls `layers`."""

    def __init__(self):
        super().__init__()
        self.layers = _Layers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers((x - 128) / 128) + 1000.0  # a visible difference if called


def test_torchscript_layers_are_called_directly_as_clean_fid_does(tmp_path):
    path = tmp_path / "inception-2015-12-05.pt"
    torch.jit.save(torch.jit.script(_WithLayers()), str(path))
    extractor = TorchScriptFeatures(str(path))
    image = Image.new("RGB", (64, 64), (255, 128, 0))
    got = extractor.features(extractor.transform()(image)[None])
    np.testing.assert_allclose(got.numpy()[0], [127 / 128, 0, -1], atol=1e-5)


def test_missing_or_bad_torchscript_file_is_input_error(tmp_path):
    missing = tmp_path / "inception-2015-12-05.pt"
    with pytest.raises(InputError, match=r"inception-2015-12-05\.pt.*metrics\.fid\.weights"):
        TorchScriptFeatures(str(missing))
    missing.write_bytes(b"not a torchscript file")
    with pytest.raises(InputError, match="cannot load .*inception-2015-12-05.pt"):
        TorchScriptFeatures(str(missing))


def test_unknown_extractor_is_input_error():
    with pytest.raises(InputError, match=r"metrics\.fid\.extractor.*'clip', 'inception'"):
        build_extractor("vgg", "", "", "cpu", 8)


# --- warnings and feature extraction over files ---


def test_small_set_warning():
    text = small_set_warning(30, 20, 2048)
    assert "30 vs 20" in text and "rank-deficient" in text and "KID" in text
    assert "only 20 images" in text
    assert "rank-deficient" not in small_set_warning(40, 45, 32)
    assert "only 40 images" in small_set_warning(40, 45, 32)
    assert small_set_warning(5000, 4000, 2048) == ""
    assert small_set_warning(100, 100, 32) == ""


def test_set_features_parallel_equals_serial_in_path_order(tmp_path):
    extractor = ClipFeatures(str(TINY), batch_size=4)
    rng = np.random.default_rng(7)
    images = _noisy(rng, 5) + _blobs(rng, 5)
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i:02d}.png"))
        image.save(paths[-1])
    serial = set_features(paths, extractor, workers=0)
    parallel = set_features(paths, extractor, workers=2, min_batches=0)
    assert serial.dtype == np.float64 and serial.shape == (10, 32)
    np.testing.assert_array_equal(parallel, serial)
    transform = extractor.transform()
    direct = extractor.features(torch.stack([transform(image) for image in images]))
    np.testing.assert_allclose(serial, direct.numpy(), rtol=1e-6, atol=1e-6)
    assert set_features([], extractor).shape == (0, 32)
