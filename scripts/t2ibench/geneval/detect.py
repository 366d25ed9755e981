"""What GenEval's rules look at: instance detections of the 80 COCO classes and the colour
of a detected object.

Detector: a transformers Mask2Former for COCO instance segmentation (e.g.
`facebook/mask2former-swin-small-coco-instance`; GenEval uses mmdet's
`mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco`), from a local folder or the local
Hugging Face cache. Its outputs are post-processed as mmdet's Mask2Former head does for
instances: per query the class softmax without "no object", the 100 best (query, class)
pairs, masks upsampled to the image (bilinear) and cut at logit 0, each score times the
mean mask probability inside its mask, and the box of each mask
(x_min, y_min, x_max + 1, y_max + 1).

Colour: zero-shot CLIP (open_clip; GenEval uses ViT-L-14 `openai`) on the object's crop:
the image composited over a grey (#999) background through the object's mask, cropped to
its box, against the ten colours, each the mean of the normalised embeddings of
"a photo of a {colour} {class}", "a photo of a {colour}-colored {class}" and
"a photo of a {colour} object" (clip_benchmark's zero-shot classifier, as GenEval runs it).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from t2ibench.errors import InputError
from t2ibench.geneval.rules import Detection
from t2ibench.geneval.suite import CLASSES, COLORS

KEY = "metrics.geneval.detector"
MAX_PER_IMAGE = 100
COLOR_TEMPLATES = ("a photo of a {c} {name}", "a photo of a {c}-colored {name}",
                   "a photo of a {c} object")  # fmt: skip
BACKGROUND = "#999"


def check_detector_folder(folder: Path, source: str) -> None:
    """A Mask2Former folder with 80 labels and its image processor, else one line."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise InputError(f"{source}: no readable config.json ({err}) - set {KEY}") from None
    if config.get("model_type") != "mask2former":
        raise InputError(
            f"{source} is a '{config.get('model_type')}' model, not a Mask2Former instance "
            f"segmentation model (e.g. facebook/mask2former-swin-small-coco-instance) - set {KEY}"
        )
    labels = config.get("id2label") or {}
    if len(labels) != len(CLASSES):
        raise InputError(
            f"{source} has {len(labels)} labels; expected the 80 COCO instance classes "
            f"(a -coco-instance checkpoint) - set {KEY}"
        )
    if not (folder / "preprocessor_config.json").is_file():
        raise InputError(
            f"{source} has no preprocessor_config.json (its image processor) - set {KEY}"
        )


class Detector:
    """Mask2Former instance detections, as GenEval's rules take them."""

    def __init__(self, model: str, device: str = "cpu", source: str | None = None):
        """`model`: a folder or cached Hub id; `source`: what the config said, for errors."""
        from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

        from t2ibench.metrics.hf import load_error, require_local, weights_id
        from t2ibench.models.checks import sha256_file

        folder, name = require_local(
            model, ("config.json",), "GenEval detector", "a Mask2Former COCO-instance",
            "facebook/mask2former-swin-small-coco-instance", KEY,
        )  # fmt: skip
        source = source or model
        check_detector_folder(folder, source)
        self.device = torch.device(device)
        try:
            self.processor = AutoImageProcessor.from_pretrained(folder)
            self.model = Mask2FormerForUniversalSegmentation.from_pretrained(folder)
        except Exception as err:  # a folder that exists but does not load: one line
            raise load_error("GenEval detector", source, KEY, err) from err
        self.model.to(self.device).eval()
        config_id = sha256_file(folder / "config.json")[:12]
        self.model_id = f"{name}@{config_id}/{weights_id(folder)}"

    @torch.inference_mode()
    def detect(self, image: Image.Image) -> dict[str, list[Detection]]:
        """Every (class, query) detection of the image, by GenEval class name."""
        image = image.convert("RGB")
        width, height = image.size
        inputs = self.processor(images=[image], return_tensors="pt").to(self.device)
        out = self.model(**inputs)
        classes = out.class_queries_logits[0].float().softmax(-1)[:, :-1]  # no "no object"
        n_classes = classes.shape[1]
        top = min(MAX_PER_IMAGE, classes.numel())
        scores, index = classes.flatten().topk(top, sorted=False)
        labels, queries = index % n_classes, index // n_classes
        masks = out.masks_queries_logits[0][queries].float()
        padded = inputs["pixel_values"].shape[-2:]
        masks = torch.nn.functional.interpolate(masks[None], size=padded, mode="bilinear")[0]
        resized = _unpadded_size(inputs, padded)
        masks = masks[:, : resized[0], : resized[1]]
        masks = torch.nn.functional.interpolate(masks[None], size=(height, width), mode="bilinear")
        masks = masks[0]
        binary = masks > 0
        mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (
            binary.flatten(1).sum(1) + 1e-6
        )
        scores = (scores * mask_scores).cpu().numpy()
        binary = binary.cpu().numpy()
        found: dict[str, list[Detection]] = {}
        for label, score, mask in zip(labels.cpu().tolist(), scores, binary, strict=True):
            found.setdefault(CLASSES[label], []).append(
                Detection(mask_box(mask), float(score), mask)
            )
        return found


def _unpadded_size(inputs, padded) -> tuple[int, int]:
    """The resized image's size inside the padded batch (its pixel mask)."""
    mask = inputs.get("pixel_mask")
    if mask is None:
        return tuple(padded)
    mask = mask[0]
    return int(mask.any(1).sum()), int(mask.any(0).sum())


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """mmdet's mask2bbox: (x_min, y_min, x_max + 1, y_max + 1); zeros for an empty mask."""
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


class ColourClassifier:
    """Zero-shot colour of detected objects with an open_clip model (see module doc)."""

    def __init__(self, model: str, pretrained: str, device: str = "cpu"):
        from t2ibench.metrics.clip_score import ClipScorer

        self.clip = ClipScorer(model, pretrained, device)
        self.model_id = self.clip.model_id
        self._weights: dict[str, torch.Tensor] = {}

    def weights(self, name: str) -> torch.Tensor:
        """(10, D): each colour's mean normalised template embedding, normalised."""
        if name not in self._weights:
            rows = []
            for colour in COLORS:
                texts = [t.format(c=colour, name=name) for t in COLOR_TEMPLATES]
                embedding = self.clip.embed_texts(texts).mean(0)
                rows.append(embedding / embedding.norm())
            self._weights[name] = torch.stack(rows)
        return self._weights[name]

    def crops(self, image: Image.Image, found: list[Detection]) -> list[Image.Image]:
        image = image.convert("RGB")
        blank = Image.new("RGB", image.size, color=BACKGROUND)
        crops = []
        for detection in found:
            crop = image
            if detection.mask is not None:
                mask = Image.fromarray(detection.mask.astype(np.uint8) * 255)
                crop = Image.composite(image, blank, mask)
            crops.append(crop.crop(detection.box[:4]))
        return crops

    def __call__(self, image: Image.Image, found: list[Detection], name: str) -> list[str]:
        if not found:
            return []
        pixels = torch.stack([self.clip.preprocess(c) for c in self.crops(image, found)])
        logits = 100 * self.clip.embed_pixels(pixels) @ self.weights(name).T
        return [COLORS[i] for i in logits.argmax(1).tolist()]
