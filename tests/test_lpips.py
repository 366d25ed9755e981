"""LpipsScorer against the lpips package's own forward pass."""

import itertools
import math

import lpips
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.metrics.lpips_diversity import LpipsScorer, to_lpips_tensor

# lpips builds its backbone with torchvision's deprecated ``pretrained=False``
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated since 0.13:UserWarning")

TORCHVISION = {"alex": torchvision.models.alexnet, "squeeze": torchvision.models.squeezenet1_1}


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Noisy gradients: related but different images, like seeds of one prompt."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, 64)[None, :, None] * rng.uniform(0, 255, (1, 1, 3))
    images = []
    for _ in range(n):
        pixels = ramp + rng.normal(0, 40, (64, 64, 3))
        images.append(Image.fromarray(pixels.clip(0, 255).astype(np.uint8)))
    return images


def _reference(net: str = "alex", seed: int = 0) -> lpips.LPIPS:
    """The lpips package's model, built the documented offline way."""
    torch.manual_seed(seed)
    return lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()


def _package_distance(model: lpips.LPIPS, a: Image.Image, b: Image.Image) -> float:
    with torch.no_grad():
        return model(lpips.im2tensor(np.asarray(a)), lpips.im2tensor(np.asarray(b))).item()


@pytest.fixture(scope="module")
def scorer() -> LpipsScorer:
    return LpipsScorer(net="alex", seed=0)


def test_distance_matches_lpips_package(scorer):
    reference = _reference("alex", seed=0)
    images = _images(4)
    for a, b in itertools.combinations(images, 2):
        assert scorer.distance(a, b) == pytest.approx(_package_distance(reference, a, b), abs=1e-6)
    assert scorer.distance(images[0], images[1]) > 1e-3


def test_diversity_is_mean_over_unordered_pairs():
    scorer = LpipsScorer(net="alex", seed=0, batch_size=3)  # 10 pairs in chunks of 3
    images = _images(5)
    pairs = [scorer.distance(a, b) for a, b in itertools.combinations(images, 2)]
    assert len(pairs) == 10
    assert scorer.diversity(images) == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)


def test_identical_images_have_zero_distance(scorer):
    image = _images(1)[0]
    assert scorer.distance(image, image.copy()) == pytest.approx(0, abs=1e-6)
    assert scorer.diversity([image, image.copy(), image.copy()]) == pytest.approx(0, abs=1e-6)


def test_fewer_than_two_images_is_nan(scorer):
    assert math.isnan(scorer.diversity([]))
    assert math.isnan(scorer.diversity(_images(1)))


def test_pixels_scaled_to_minus_one_one():
    pixels = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    pixels[0, 0], pixels[0, 1] = 0, 255
    tensor = to_lpips_tensor(Image.fromarray(pixels))
    assert tensor.shape == (1, 3, 8, 8) and tensor.dtype == torch.float32
    assert torch.allclose(tensor, lpips.im2tensor(pixels), atol=1e-6)
    assert tensor.min().item() == -1 and tensor.max().item() == 1


# AlexNet's classifier alone is 230 MB: its whole-model file is exercised through SqueezeNet
@pytest.mark.parametrize(("net", "features_only"), [("alex", True), ("squeeze", False)])
def test_backbone_weights_file_is_loaded(net, features_only, tmp_path):
    torch.manual_seed(42)
    backbone = TORCHVISION[net]()
    state = backbone.features.state_dict() if features_only else backbone.state_dict()
    weights = tmp_path / f"{net}.pth"
    torch.save(state, weights)

    reference = _reference(net)
    for piece in reference.net.children():  # lpips keeps torchvision's layer index as the name
        for index, layer in piece.named_children():
            layer.load_state_dict(backbone.features[int(index)].state_dict())

    scorer = LpipsScorer(net=net, backbone_weights=str(weights))
    random = LpipsScorer(net=net, seed=0)
    a, b = _images(2)
    assert scorer.distance(a, b) == pytest.approx(_package_distance(reference, a, b), abs=1e-6)
    assert scorer.distance(a, b) != pytest.approx(random.distance(a, b), abs=1e-4)
    assert "sha256:" in scorer.metric_id and scorer.metric_id != random.metric_id


def test_metric_id_is_stable(scorer):
    assert LpipsScorer(net="alex", seed=0).metric_id == scorer.metric_id
    assert LpipsScorer(net="alex", seed=1).metric_id != scorer.metric_id
    assert LpipsScorer(net="squeeze", seed=0).metric_id != scorer.metric_id


def test_missing_backbone_file_is_input_error(tmp_path):
    missing = tmp_path / "alexnet-owt-7be5be79.pth"
    with pytest.raises(InputError, match="alexnet-owt-7be5be79.pth"):
        LpipsScorer(backbone_weights=str(missing))


def test_wrong_backbone_file_is_input_error(tmp_path):
    weights = tmp_path / "squeezenet.pth"
    torch.save(torchvision.models.squeezenet1_1().state_dict(), weights)
    with pytest.raises(InputError, match="squeezenet.pth.*alexnet"):
        LpipsScorer(net="alex", backbone_weights=str(weights))
    with pytest.raises(InputError, match="unknown LPIPS net"):
        LpipsScorer(net="resnet")
