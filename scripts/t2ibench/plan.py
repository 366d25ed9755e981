"""The plan: the one source of truth for what will be generated.

Built from a validated config, it lists every image target
``{results}/{experiment}/{model}/{cell}/p{PPP}_i{II}_s{seed}.png`` with the settings
that determine its pixels. The Snakefile, the CLI and the tests all use it.

Seeds: image ``i`` of every prompt uses ``seeds[i]`` (``seed + i`` unless the config
lists seeds), so every prompt, model and cell sees the same seeds and comparisons are
paired.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
from dataclasses import dataclass

from t2ibench import batching, rounds, speed
from t2ibench.cells import PROMPT_SR, Cell
from t2ibench.errors import InputError
from t2ibench.experiments import (
    BASELINE,
    Experiment,
    check_cell_settings,
    load_experiments,
    select_models,
)
from t2ibench.models import families
from t2ibench.models.registry import ModelSpec, resolve_models
from t2ibench.prompts import Prompt, custom_prompt, load_prompts, load_reference_images

IMAGE_NAME = re.compile(r"^p(?P<prompt>\d{3,})_i(?P<image>\d{2,})_s(?P<seed>\d+)\.png$")


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


@dataclass
class ExperimentPlan:
    """One experiment as planned: its cells, and the models, prompts and seeds it uses."""

    experiment: Experiment
    models: list[str]
    prompts: list[Prompt]
    seeds: list[int]

    @property
    def cells(self) -> list[Cell]:
        return self.experiment.cells


def experiment_seeds(generation: dict, quick: dict | None) -> list[int]:
    """Image i of every prompt uses seeds[i]: generation.seeds, else seed + i."""
    seeds = generation["seeds"] or [
        generation["seed"] + i for i in range(generation["images_per_prompt"])
    ]
    if quick:
        if quick.get("seeds"):
            return list(quick["seeds"])
        if quick.get("images_per_prompt"):
            return seeds[: quick["images_per_prompt"]]
    return seeds


class Plan:
    """Every image target of a config, with lookups by target key."""

    def __init__(
        self,
        config: dict,
        models: list[ModelSpec],
        experiments: dict[str, ExperimentPlan],
        results_dir: str | None = None,
    ):
        self.config = config
        folder = config["prompts"]["reference_images"]
        # Reference images loaded independently of the prompts (not paired with them).
        self.reference_images = load_reference_images(folder) if folder else []
        self.models = {m.name: m for m in models}
        self.experiments = experiments
        self.results_dir = results_dir or config["results_dir"]
        self.jobs: list[ImageJob] = []
        for name, exp in experiments.items():
            for model in exp.models:
                for cell in exp.cells:
                    for prompt in exp.prompts:
                        for i_index, seed in enumerate(exp.seeds):
                            self.jobs.append(
                                ImageJob(name, model, cell.name, prompt.index, i_index, seed)
                            )
        self.by_key = {job.key: job for job in self.jobs}
        self._cells = {(e, c.name): c for e, exp in experiments.items() for c in exp.cells}
        self._loras: dict[tuple, list[dict]] = {}
        self._prompts = {(e, p.index): p for e, exp in experiments.items() for p in exp.prompts}

    def path(self, job: ImageJob) -> str:
        return f"{self.results_dir}/{job.relpath}"

    def vote_name(self, experiment: str) -> str:
        """What vote files call the experiment: its folder under the config's
        results_dir (`prompt-<hash>/baseline` for a custom prompt's run), so that votes
        of one run never count in another; image paths in them start with it."""
        below = os.path.relpath(self.results_dir, self.config["results_dir"])
        return experiment if below == "." else f"{below}/{experiment}"

    def paths(self, experiment: str | None = None) -> list[str]:
        return [self.path(j) for j in self.jobs if experiment in (None, j.experiment)]

    def sequential(self, experiment: str) -> rounds.Design | None:
        """The experiment's early-stopping design (t2ibench.rounds); None: fixed design."""
        exp = self.experiments[experiment]
        if not rounds.active(self.config, exp.experiment):
            return None
        return rounds.design(self.config, exp.experiment, len(exp.prompts))

    def cell(self, experiment: str, cell: str) -> Cell:
        return self._cells[(experiment, cell)]

    def prompt(self, job: ImageJob) -> Prompt:
        return self._prompts[(job.experiment, job.prompt_index)]

    def cell_settings(self, experiment: str, cell: str) -> dict:
        """The generation settings of a cell: the config's, the experiment's, the cell's."""
        exp = self.experiments[experiment].experiment
        return {**self.config["generation"], **exp.settings, **self.cell(experiment, cell).settings}

    def model_settings(self, model: str) -> list[dict]:
        """The family settings of each cell a model runs in, as applied."""
        spec = self.models[model]
        family = families.get(spec.family)
        return [
            family.family_settings(self.cell_settings(name, cell.name), spec.defaults)
            for name, exp in self.experiments.items()
            if model in exp.models
            for cell in exp.cells
        ]

    def prompt_text(self, job: ImageJob, gen: dict | None = None) -> str:
        """The prompt as the image was made with it (after a cell's prompt search/replace);
        `gen` is the cell's settings when the caller has them already."""
        gen = gen if gen is not None else self.cell_settings(job.experiment, job.cell)
        text = self.prompt(job).text
        sr = gen.get(PROMPT_SR)
        return text.replace(sr[0], sr[1]) if sr else text

    def settings(self, job: ImageJob) -> dict:
        """Everything that determines an image's pixels (and nothing that does not).

        Snakemake stores this as the job's params, so a change here (a new prompt text
        behind an index, another sampler, more steps) reruns exactly the affected images.
        """
        model = self.models[job.model]
        gen = self.cell_settings(job.experiment, job.cell)
        family = families.get(model.family)
        loras = self.loras(model, gen)
        return {
            **family.family_settings(gen, model.defaults),
            **({"vae": model.vae} if model.vae else {}),  # only when set: params stay stable
            **({"loras": loras} if loras else {}),
            "model": model.name,
            "model_source": model.source,
            "family": model.family,
            "prediction_type": model.prediction_type,
            "prompt_id": self.prompt(job).id,
            "prompt": self.prompt_text(job, gen),
            # What is applied: nothing where the model's pipeline takes no negative prompt.
            "negative_prompt": gen["negative_prompt"] if model.negative_prompt else "",
            "sampler": family.sampler(gen),
            **family.common_settings(gen, model.defaults),
            "seed": job.seed,
            "dtype": self.config["dtype"],
            **speed.settings_of(gen, family),
            **batching.settings_of(gen),
        }

    def loras(self, model: ModelSpec, gen: dict, where: str = "") -> list[dict]:
        """The LoRAs of an image: the model's own, then the cell's `lora` (t2ibench.lora),
        each with its file's sha256."""
        from t2ibench import lora
        from t2ibench.models.checks import sha_cache

        wanted = [(f, w, f"config key 'models' (model '{model.name}')") for f, w in model.loras]
        if gen.get("lora"):
            weight = 1.0 if gen.get("lora_weight") is None else gen["lora_weight"]
            label = where or "config key 'generation.lora'"
            wanted.append((gen["lora"], weight, f"{label} (model '{model.name}')"))
        out = []
        for file, weight, label in wanted:
            key = (file, weight, model.family)
            if key not in self._loras:
                cache = sha_cache(self.config["resources_dir"])
                family = families.get(model.family)
                self._loras[key] = lora.resolve(file, weight, label, cache, family)
            out.append(dict(self._loras[key]))
        return out

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


def _experiment_prompts(config: dict, exp: Experiment, quick: dict | None) -> list[Prompt]:
    if config["prompt"] is not None:
        return [custom_prompt(config["prompt"])]
    try:
        prompts = load_prompts(exp.prompts or config["prompts"])
    except InputError as err:  # an experiment's own prompts: name its file
        if not exp.prompts:
            raise
        mine = f"experiment file {exp.source}: key 'prompts"
        raise InputError(str(err).replace("config key 'prompts", mine, 1)) from None
    if quick and quick.get("num_prompts"):
        prompts = prompts[: quick["num_prompts"]]
    return prompts


def check_model_settings(model: ModelSpec, gen: dict, where: str, max_pixels: int | None) -> None:
    """One model's settings in one cell, as its family fills them in: the family's own
    checks, text-encoder layers, and the image size against max_pixels."""
    family = families.get(model.family)
    family.check_settings(gen, where)
    speed.check(family, gen, where, model.name)
    if model.text_layers is not None:
        family.check_layers(gen, model.text_layers, model.name, where)
    size = family.common_settings(gen, model.defaults)
    width, height = size["width"], size["height"]
    step = family.size_multiple
    for key, value in (("width", width), ("height", height)):
        if value % step:
            raise InputError(
                f"{where}{key}': {value} for model '{model.name}': {family.label} images need "
                f"a multiple of {step} (e.g. {value - value % step})"
            )
    if max_pixels and width * height > max_pixels:
        raise InputError(
            f"{where}width': {width}x{height} (model '{model.name}') is {width * height} "
            f"pixels, above max_pixels = {max_pixels}; make the image smaller, or raise "
            "max_pixels on purpose if the model and the GPU are made for it"
        )


def check_lora_support(model: ModelSpec, where: str) -> None:
    if not model.lora:
        label = families.get(model.family).label
        raise InputError(
            f"{where}lora': model '{model.name}' ({label}) takes no LoRAs: diffusers has no "
            "LoRA loader for its pipeline; limit the LoRAs to models that take them"
        )


def build_plan(config: dict) -> Plan:
    """Build the plan of a validated config (see t2ibench.config.validate_config)."""
    models = resolve_models(config)
    by_name = {m.name: m for m in models}
    model_families = {m.name: m.family for m in models}
    families.check_family_settings(config["generation"], model_families)
    experiments = {}
    for name, exp in load_experiments(config["experiments"], config["quick"]).items():
        chosen = select_models(exp, model_families) if name != BASELINE else list(model_families)
        check_cell_settings(exp, config["generation"], config["max_pixels"])
        for cell in exp.cells:
            where = (
                "config key 'generation."
                if name == BASELINE
                else f"experiment '{name}', cell '{cell.name}': key '"
            )
            merged = {**config["generation"], **exp.settings, **cell.settings}
            if merged.get("lora_weight") is not None and not merged.get("lora"):
                raise InputError(
                    f"{where}lora_weight': {merged['lora_weight']} without a lora: it is the "
                    "strength of `lora` (a model's own LoRAs take theirs in `loras`); set "
                    "lora, or leave lora_weight out"
                )
            for model in chosen:
                check_model_settings(by_name[model], merged, where, config["max_pixels"])
                if by_name[model].loras or merged.get("lora"):
                    check_lora_support(by_name[model], where)
        quick = exp.quick if config["quick"] else None
        prompts = _experiment_prompts(config, exp, quick)
        if rounds.active(config, exp):
            full = prompts if quick is None else _experiment_prompts(config, exp, None)
            rounds.check(config, name, exp, len(full), len(chosen) * len(exp.cells))
            prompts = prompts[: exp.sequential.get("max_prompts") or len(prompts)]
        experiments[name] = ExperimentPlan(
            exp, chosen, prompts, experiment_seeds(config["generation"], quick)
        )
    results_dir = config["results_dir"]
    if config["prompt"] is not None:
        digest = hashlib.sha256(config["prompt"].strip().encode()).hexdigest()[:8]
        results_dir = f"{results_dir}/prompt-{digest}"
    plan = Plan(config, models, experiments, results_dir)
    for name, model in plan.models.items():
        unused = families.get(model.family).unused_components(plan.model_settings(name))
        if unused:
            plan.models[name] = dataclasses.replace(model, unused=unused)
    # Every LoRA file is read (and hashed, once: the sha256 cache) before anything runs.
    for name, exp in experiments.items():
        for cell in exp.cells:
            where = f"experiment '{name}', cell '{cell.name}': key 'lora'"
            gen = plan.cell_settings(name, cell.name)
            for model in exp.models:
                plan.loras(plan.models[model], gen, where)
    batching.check(plan)
    if len(plan.jobs) > config["max_images"]:
        counts = ", ".join(
            f"{name} {sum(1 for j in plan.jobs if j.experiment == name)}" for name in experiments
        )
        raise InputError(
            f"config key 'max_images': the plan has {len(plan.jobs)} images ({counts}), "
            f"above max_images = {config['max_images']}; check the experiments, or raise it "
            f"with --config max_images={len(plan.jobs)}"
        )
    return plan
