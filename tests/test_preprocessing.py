"""Every scorer prepares images as its authors' code does, on odd inputs.

Images are written to disk in several modes (RGB non-square both ways, RGBA, L, P, LA)
and read through the workflow's own loading path (t2ibench.metrics.loader, the
DataLoader the metric jobs use). Each reference below is written here from the
authors' published preprocessing, applied to ``Image.open(path)`` as their code does:

- CLIP score: open_clip's own ``preprocess`` from ``create_model_and_transforms``;
- HPS v2: ``image_transform(..., is_train=False, resize_longest_max=True)`` of the HPSv2
  repository (hpsv2/src/open_clip/transform.py: ``ResizeMaxSize``, ``MaskAwareNormalize``);
- ImageReward: ``_transform`` of the ImageReward package (ImageReward/ImageReward.py);
- PickScore: its README (``processor(images=..., return_tensors="pt")``);
- SigLIP: the transformers model card usage (``processor(images=...)``);
- LPIPS: ``lpips.im2tensor(lpips.load_image(path))`` (cv2 ``imread``: RGB, alpha dropped);
- FID, CLIP features: clean-fid's ``ResizeDataset`` + ``img_preprocess_clip`` + ``CLIP_fx``;
- FID, Inception: clean-fid's "clean" resize (``make_resizer("PIL", False, "bicubic")``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    Compose,
    InterpolationMode,
    Normalize,
    Resize,
    ToTensor,
)

from t2ibench.metrics.loader import decoded_batches

REPO = Path(__file__).resolve().parents[1]
TINY_CLIP = str(REPO / "config" / "models" / "open_clip-tiny.json")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# (mode, height, width): wide and tall RGB (SDXL's 832 x 1216 scaled down), and the modes
# a PNG made elsewhere may have.
INPUTS = [
    ("RGB", 104, 152),
    ("RGB", 152, 104),
    ("RGBA", 90, 120),
    ("L", 70, 110),
    ("P", 110, 70),
    ("LA", 64, 100),
]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """PNG files of noise with a gradient (so resizing and cropping change values)."""
    folder = tmp_path_factory.mktemp("modes")
    rng = np.random.default_rng(0)
    paths = []
    for i, (mode, h, w) in enumerate(INPUTS):
        base = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        base[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
        base[..., 3] = rng.integers(0, 256, (h, w), dtype=np.uint8)  # alpha varies
        image = Image.fromarray(base, "RGBA")
        image = image.convert("RGB").convert("P") if mode == "P" else image.convert(mode)
        path = folder / f"{i}-{mode}-{h}x{w}.png"
        image.save(path)
        assert Image.open(path).mode == mode
        paths.append(str(path))
    return paths


def ours(paths: list[str], transform) -> list[torch.Tensor]:
    """The tensors the metric jobs compute: the loader, then the scorer's transform."""
    rows: list = [None] * len(paths)
    for pixels, index in decoded_batches(paths, transform, batch_size=2, workers=0):
        for i, x in zip(index.tolist(), pixels, strict=True):
            rows[i] = x
    return rows


def assert_same(got: list[torch.Tensor], expected: list[torch.Tensor], atol: float = 0.0):
    for path_index, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert a.shape == b.shape, INPUTS[path_index]
        assert torch.allclose(a, b, atol=atol, rtol=0), (INPUTS[path_index], (a - b).abs().max())


# --- references, as their authors wrote them ---------------------------------------------


class ResizeMaxSize(torch.nn.Module):
    """hpsv2/src/open_clip/transform.py."""

    def __init__(self, max_size, interpolation=InterpolationMode.BICUBIC, fill=0):
        super().__init__()
        self.max_size, self.interpolation, self.fill = max_size, interpolation, fill

    def forward(self, img):
        height, width = img.shape[1:] if isinstance(img, torch.Tensor) else img.size[::-1]
        scale = self.max_size / float(max(height, width))
        if scale != 1.0:
            new_size = tuple(round(dim * scale) for dim in (height, width))
            img = F.resize(img, new_size, self.interpolation)
            pad_h = self.max_size - new_size[0]
            pad_w = self.max_size - new_size[1]
            img = F.pad(
                img,
                padding=[pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2],
                fill=self.fill,
            )
        return img


class MaskAwareNormalize(torch.nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.normalize = Normalize(mean=mean, std=std)

    def forward(self, tensor):
        if tensor.shape[0] == 4:
            return torch.cat([self.normalize(tensor[:3]), tensor[3:]], dim=0)
        return self.normalize(tensor)


def _convert_to_rgb_or_rgba(image):
    return image if image.mode == "RGBA" else image.convert("RGB")


def hps_preprocess_val(size: int) -> Compose:
    return Compose(
        [
            _convert_to_rgb_or_rgba,
            ToTensor(),
            ResizeMaxSize(size, fill=0),
            MaskAwareNormalize(mean=CLIP_MEAN, std=CLIP_STD),
        ]
    )


def image_reward_transform(n_px: int) -> Compose:
    """ImageReward/ImageReward.py `_transform`."""
    return Compose(
        [
            Resize(n_px, interpolation=InterpolationMode.BICUBIC),
            CenterCrop(n_px),
            lambda image: image.convert("RGB"),
            ToTensor(),
            Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


def clean_fid_clip(path: str, size: int = 64) -> torch.Tensor:
    """clean-fid: ResizeDataset.__getitem__ with fn_resize = img_preprocess_clip, then
    CLIP_fx's `img_t / 255` and Normalize (clean-fid hard-codes 224, CLIP ViT-B/32's size;
    the tiny model's is 64)."""
    img_np = np.array(Image.open(path).convert("RGB"))
    x = Image.fromarray(img_np.astype(np.uint8)).convert("RGB")
    t = Compose([Resize(size, interpolation=InterpolationMode.BICUBIC), CenterCrop(size)])
    resized = np.asarray(t(x)).clip(0, 255).astype(np.uint8)
    img_t = ToTensor()(np.array(resized)) * 255
    return Normalize(CLIP_MEAN, CLIP_STD)(img_t / 255.0)


def clean_fid_resize(path: str, size: int = 299) -> torch.Tensor:
    """clean-fid: make_resizer("PIL", False, "bicubic", (size, size)) on the RGB array."""
    x = np.array(Image.open(path).convert("RGB"))

    def resize_single_channel(x_np):
        img = Image.fromarray(x_np.astype(np.float32), mode="F")
        img = img.resize((size, size), resample=Image.BICUBIC)
        return np.asarray(img).clip(0, 255).reshape(size, size, 1)

    out = np.concatenate([resize_single_channel(x[:, :, i]) for i in range(3)], axis=2)
    return ToTensor()(out.astype(np.float32))


def lpips_reference(path: str) -> torch.Tensor:
    """lpips.im2tensor(lpips.load_image(path)); load_image is cv2.imread(path)[:, :, ::-1],
    whose 8-bit colour conversion equals PIL's convert("RGB") for these modes (alpha
    dropped, palettes expanded, grey replicated)."""
    import lpips

    image = np.asarray(Image.open(path).convert("RGB"))
    return lpips.im2tensor(image)[0]


# --- the tests ------------------------------------------------------------------------


def test_clip_score_is_open_clips_own_preprocess(images):
    import open_clip

    from t2ibench.metrics.clip_score import ClipScorer, _register_architecture

    scorer = ClipScorer(TINY_CLIP, "")
    _, _, preprocess = open_clip.create_model_and_transforms(_register_architecture(TINY_CLIP))
    assert_same(ours(images, scorer.transform()), [preprocess(Image.open(p)) for p in images])


@pytest.mark.parametrize("antialias", [True, False])
def test_hps_is_the_official_letterbox(images, tmp_path, antialias):
    from t2ibench.metrics.builders import write_tiny_open_clip_checkpoint
    from t2ibench.metrics.clip_score import HpsScorer

    weights = tmp_path / "hps.pt"
    write_tiny_open_clip_checkpoint(weights, Path(TINY_CLIP))
    scorer = HpsScorer(TINY_CLIP, str(weights), antialias=antialias)
    reference = hps_preprocess_val(64)
    if not antialias:  # torchvision < 0.17's default for tensors
        reference.transforms[2].forward = _no_antialias(reference.transforms[2])
    expected = [reference(Image.open(p))[:3] for p in images]  # RGBA: the colour channels
    got = ours(images, scorer.transform())
    assert_same(got, expected, atol=1e-6)
    assert all(x.shape == (3, 64, 64) for x in got)
    # letterbox, not crop: a wide image keeps all its columns and has zero-padded rows
    wide = got[0] * torch.tensor(CLIP_STD)[:, None, None] + torch.tensor(CLIP_MEAN)[:, None, None]
    assert wide[:, :10].abs().max() < 1e-6 and wide[:, 32].abs().min() >= 0
    # the score is the plain cosine of the model's embeddings of those tensors
    prompts = ["a red cube", "a tall tower"] * 3
    pil = [Image.open(p) for p in images]
    with torch.no_grad():
        image_features = scorer.model.encode_image(torch.stack(expected), normalize=True)
        text_features = scorer.model.encode_text(scorer.tokenizer(prompts), normalize=True)
    cosine = (image_features * text_features).sum(-1)
    assert scorer.score(pil, prompts) == pytest.approx(cosine.tolist(), abs=1e-6)


def _no_antialias(module):
    def forward(img):
        height, width = img.shape[1:]
        scale = module.max_size / float(max(height, width))
        new_size = tuple(round(dim * scale) for dim in (height, width))
        img = F.resize(img, new_size, module.interpolation, antialias=False)
        pad_h, pad_w = module.max_size - new_size[0], module.max_size - new_size[1]
        return F.pad(img, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2])

    return forward


def test_hps_changed_from_the_centre_crop(images, tmp_path):
    """The letterbox is a real change on non-square images (the cache key says so)."""
    import open_clip

    from t2ibench.metrics.builders import write_tiny_open_clip_checkpoint
    from t2ibench.metrics.clip_score import HpsScorer

    weights = tmp_path / "hps.pt"
    write_tiny_open_clip_checkpoint(weights, Path(TINY_CLIP))
    scorer = HpsScorer(TINY_CLIP, str(weights))
    crop = open_clip.image_transform(64, is_train=False)
    wide = Image.open(images[0])
    assert not torch.allclose(scorer.transform()(wide), crop(wide), atol=1e-3)
    assert scorer.metric_id.startswith("hps/v2/")


def test_image_reward_resizes_before_dropping_alpha(images, tmp_path):
    from t2ibench.metrics.image_reward import ImageRewardScorer, write_tiny_image_reward
    from t2ibench.metrics.image_reward_checkpoint import load_architecture

    write_tiny_image_reward(tmp_path, seed=0)
    architecture = str(REPO / "config" / "metrics" / "image-reward-tiny.json")
    scorer = ImageRewardScorer(
        str(tmp_path / "ImageReward.pt"), str(tmp_path / "tokenizer"), architecture=architecture
    )
    size = load_architecture(architecture).image["size"]
    reference = image_reward_transform(size)
    assert_same(ours(images, scorer.transform()), [reference(Image.open(p)) for p in images])
    # on RGBA the order matters: converting first gives other pixels
    rgba = Image.open(images[2])
    assert not torch.allclose(reference(rgba), reference(rgba.convert("RGB")), atol=1e-3)


@pytest.mark.parametrize("which", ["pickscore", "siglip"])
def test_hf_scorers_use_their_processor_on_the_image_as_opened(images, tmp_path, which):
    from transformers import AutoProcessor

    if which == "pickscore":
        from t2ibench.metrics.pickscore import PickScoreScorer as Scorer
        from t2ibench.metrics.pickscore import write_tiny_pickscore as write
    else:
        from t2ibench.metrics.siglip import SiglipScorer as Scorer
        from t2ibench.metrics.siglip import write_tiny_siglip as write
    write(tmp_path, seed=0)
    scorer = Scorer(str(tmp_path))
    processor = AutoProcessor.from_pretrained(tmp_path)
    expected = [
        processor(images=Image.open(p), return_tensors="pt")["pixel_values"][0] for p in images
    ]
    assert_same(ours(images, scorer.transform()), expected)
    # transformers composites RGBA on white before resizing: not the same as dropping alpha
    rgba = Image.open(images[2])
    dropped = processor(images=rgba.convert("RGB"), return_tensors="pt")["pixel_values"][0]
    assert not torch.allclose(expected[2], dropped, atol=1e-3)


def test_lpips_input_is_im2tensor_of_load_image(images):
    from t2ibench.metrics.loader import open_rgb
    from t2ibench.metrics.lpips_diversity import to_lpips_tensor

    for path in images:
        got = to_lpips_tensor(open_rgb(path))[0]
        assert torch.allclose(got, lpips_reference(path), atol=1e-6), path


def test_fid_clip_features_are_prepared_as_clean_fid_does(images):
    from t2ibench.metrics.fid import ClipFeatures

    extractor = ClipFeatures(TINY_CLIP, "")
    assert_same(ours(images, extractor.transform()), [clean_fid_clip(p) for p in images], 1e-6)


def test_fid_inception_input_is_clean_fids_clean_resize(images):
    from t2ibench.metrics.fid import CleanTransform

    assert_same(ours(images, CleanTransform(299)), [clean_fid_resize(p) for p in images], 1e-4)


def test_hps_scores_an_image_far_wider_than_tall(tmp_path):
    from t2ibench.metrics.builders import write_tiny_open_clip_checkpoint
    from t2ibench.metrics.clip_score import HpsScorer

    weights = tmp_path / "hps.pt"
    write_tiny_open_clip_checkpoint(weights, Path(TINY_CLIP))
    x = HpsScorer(TINY_CLIP, str(weights)).transform()(Image.new("RGB", (2000, 4), "red"))
    assert x.shape == (3, 64, 64)  # one row of pixels, the rest padding
