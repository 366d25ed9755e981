"""A tiny random Mask2Former for COCO instance segmentation (80 labels) in the real
on-disk format, so GenEval's whole path (loading, inference, post-processing, rules)
runs offline in the demo and the tests. Its detections mean nothing."""

from __future__ import annotations

from pathlib import Path

from t2ibench.geneval.suite import CLASSES
from t2ibench.seeding import seeded


def write_tiny_detector(folder: Path, seed: int = 0) -> None:
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(
        image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2],
        window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    config = Mask2FormerConfig(
        backbone_config=backbone,
        use_pretrained_backbone=False,
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={name: i for i, name in enumerate(CLASSES)},
        num_queries=12,
        hidden_dim=32,
        feature_size=32,
        mask_feature_size=32,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=64,
        encoder_feedforward_dim=64,
        common_stride=4,
    )
    with seeded(seed):
        model = Mask2FormerForUniversalSegmentation(config).eval()
    model.save_pretrained(folder)
    processor = Mask2FormerImageProcessor(
        size={"shortest_edge": 64, "longest_edge": 128}, size_divisor=32, ignore_index=255,
        do_reduce_labels=False,
    )  # fmt: skip
    processor.save_pretrained(folder)
