"""Shared fixtures: small configs built on the repository's defaults."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads, and with two OpenMP threads on a busy
    two-core machine a 0.1 s forward now and then takes several seconds. Modules of
    tiny-model tests use it: `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def base_config(tmp_path) -> dict:
    """A minimal valid config with one JSON prompt set in tmp_path."""
    prompts = tmp_path / "set.json"
    prompts.write_text(
        json.dumps(
            {
                "a_001": {"text": "a red cube", "category": "shapes"},
                "a_002": {"text": "a blue sphere", "category": "shapes"},
                "b_001": {"text": "a cat on a mat", "category": "animals"},
            }
        )
    )
    return {
        "models": [{"name": "tiny", "source": "builtin:tiny-sdxl"}],
        "prompts": {"sources": [str(prompts)]},
        "generation": {"steps": 2, "width": 64, "height": 64, "images_per_prompt": 2},
        "results_dir": str(tmp_path / "results"),
        "resources_dir": str(tmp_path / "resources"),
    }


def with_changes(config: dict, **changes) -> dict:
    """A deep copy of `config` with dotted keys replaced (`generation.steps=0`)."""
    config = copy.deepcopy(config)
    for dotted, value in changes.items():
        node = config
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return config


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# The longest file, mostly waiting on SLURM's daemons: started first, beside the others.
FIRST = ("test_slurm.py",)


def pytest_collection_modifyitems(items):
    """End-to-end tests first, the SLURM suite before them: with `-n` the long files then
    start at once instead of last (each file runs on one worker, --dist loadfile)."""
    items.sort(
        key=lambda item: (item.get_closest_marker("slow") is None, item.path.name not in FIRST)
    )


def pipeline_index(class_name: str, **components) -> dict:
    """A model_index.json for `class_name` that names every component its pipeline needs
    (null: made without it, no folder needed), and `components` besides."""
    from t2ibench.models.families.diffusers import required_components

    index = {"_class_name": class_name}
    index.update({name: [None, None] for name in required_components(class_name) or ()})
    return {**index, **components}
