"""The plan: the one source of truth for what will be generated.

Built from a validated config, it lists every image target
``{results}/{experiment}/{model}/{cell}/p{PPP}_i{II}_s{seed}.png`` with the settings
that determine its pixels. The Snakefile, the CLI and the tests all use it.

Seeds: image ``i`` of every prompt uses ``seed + i``, so every prompt (and every model
and cell) sees the same seed sequence and comparisons are paired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from t2ibench.families import (
    DEFAULT_STEPS,
    ZIMAGE_SAMPLER,
    check_family_settings,
    check_hidden_layers,
    family_settings,
)
from t2ibench.models.registry import ModelSpec, resolve_models
from t2ibench.prompts import Prompt, load_prompts, load_reference_images

IMAGE_NAME = re.compile(r"^p(?P<prompt>\d{3,})_i(?P<image>\d{2,})_s(?P<seed>\d+)\.png$")
BASELINE = "baseline"
DEFAULT_CELL = "default"


@dataclass(frozen=True)
class Cell:
    name: str
    settings: dict  # generation keys this cell overrides


@dataclass(frozen=True)
class ImageJob:
    experiment: str
    model: str
    cell: str
    prompt_index: int
    image_index: int
    seed: int

    @property
    def filename(self) -> str:
        return image_filename(self.prompt_index, self.image_index, self.seed)

    @property
    def relpath(self) -> str:
        return f"{self.experiment}/{self.model}/{self.cell}/{self.filename}"

    @property
    def key(self) -> tuple:
        return (self.experiment, self.model, self.cell, self.prompt_index, self.image_index)


def image_filename(prompt_index: int, image_index: int, seed: int) -> str:
    return f"p{prompt_index:03d}_i{image_index:02d}_s{seed}.png"


class Plan:
    """Every image target of a config, with lookups by target key."""

    def __init__(
        self,
        config: dict,
        prompts: list[Prompt],
        models: list[ModelSpec],
        experiments: dict[str, list[Cell]],
    ):
        self.config = config
        self.prompts = prompts
        folder = config["prompts"]["reference_images"]
        # Reference images loaded independently of the prompts (not paired with them).
        self.reference_images = load_reference_images(folder) if folder else []
        self.models = {m.name: m for m in models}
        self.experiments = experiments
        self.results_dir = config["results_dir"]
        gen = config["generation"]
        self.jobs: list[ImageJob] = []
        for experiment, cells in experiments.items():
            for model in self.models:
                for cell in cells:
                    settings = {**gen, **cell.settings}
                    for p_index in range(len(prompts)):
                        for i_index in range(settings["images_per_prompt"]):
                            self.jobs.append(
                                ImageJob(
                                    experiment,
                                    model,
                                    cell.name,
                                    p_index,
                                    i_index,
                                    settings["seed"] + i_index,
                                )
                            )
        self.by_key = {job.key: job for job in self.jobs}
        self._cells = {(e, c.name): c for e, cells in experiments.items() for c in cells}

    def path(self, job: ImageJob) -> str:
        return f"{self.results_dir}/{job.relpath}"

    def paths(self, experiment: str | None = None) -> list[str]:
        return [self.path(j) for j in self.jobs if experiment in (None, j.experiment)]

    def cell(self, experiment: str, cell: str) -> Cell:
        return self._cells[(experiment, cell)]

    def settings(self, job: ImageJob) -> dict:
        """Everything that determines an image's pixels (and nothing that does not).

        Snakemake stores this as the job's params, so a change here (a new prompt text
        behind an index, another sampler, more steps) reruns exactly the affected images.
        """
        model = self.models[job.model]
        prompt = self.prompts[job.prompt_index]
        gen = {**self.config["generation"], **self.cell(job.experiment, job.cell).settings}
        family = family_settings(model.family, gen)
        return {
            **family,
            **({"vae": model.vae} if model.vae else {}),  # only when set: params stay stable
            "model": model.name,
            "model_source": model.source,
            "family": model.family,
            "prediction_type": model.prediction_type,
            "prompt_id": prompt.id,
            "prompt": prompt.text,
            "negative_prompt": gen["negative_prompt"],
            "sampler": ZIMAGE_SAMPLER if model.family == "zimage" else gen["sampler"],
            "steps": gen["steps"] or DEFAULT_STEPS[model.family],
            "guidance_scale": float(gen["guidance_scale"]),
            "width": gen["width"],
            "height": gen["height"],
            "seed": job.seed,
            "dtype": self.config["dtype"],
        }

    def lookup(
        self, experiment: str, model: str, cell: str, prompt: str, image: str, seed: str
    ) -> ImageJob:
        """The job behind a target path's wildcards; KeyError if it is not planned."""
        job = self.by_key[(experiment, model, cell, int(prompt), int(image))]
        if job.seed != int(seed) or job.filename != image_filename(
            int(prompt), int(image), int(seed)
        ):
            raise KeyError(
                f"{experiment}/{model}/{cell}: no planned image p{prompt}_i{image}_s{seed}"
            )
        return job


def baseline_experiments() -> dict[str, list[Cell]]:
    return {BASELINE: [Cell(DEFAULT_CELL, {})]}


def build_plan(config: dict) -> Plan:
    """Build the plan of a validated config (see t2ibench.config.validate_config)."""
    prompts = load_prompts(config["prompts"])
    models = resolve_models(config)
    check_family_settings(config["generation"], {m.name: m.family for m in models})
    check_hidden_layers(config["generation"], {m.name: m.text_layers for m in models})
    return Plan(config, prompts, models, baseline_experiments())


def count_missing(plan: Plan) -> int:
    return sum(1 for p in plan.paths() if not Path(p).exists())
