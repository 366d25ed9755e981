"""Samplers by their common (A1111/ComfyUI) names, mapped to diffusers schedulers.

Each entry names a scheduler class and the config overrides that turn it into the
named sampler. A scheduler is rebuilt from the checkpoint's own scheduler config with
``from_config``, so betas and timestep settings of the model are kept.
"""

from __future__ import annotations

from t2ibench.errors import InputError

SAMPLERS: dict[str, tuple[str, dict]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "dpmpp_2m_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True},
    ),
    "dpmpp_2m_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpmpp_2m_sde_karras": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
    ),
    # DPMSolverSDE draws its noise from a Brownian tree seeded by `noise_sampler_seed`,
    # not from the pipeline's generator: make_scheduler sets it to the image's seed.
    "dpmpp_sde": ("DPMSolverSDEScheduler", {}),
    "dpmpp_sde_karras": ("DPMSolverSDEScheduler", {"use_karras_sigmas": True}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "lms_karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
}

# Schedulers that take `rescale_betas_zero_snr` (others, such as Heun, silently drop it).
ZERO_SNR = {
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "DDIMScheduler",
    "UniPCMultistepScheduler",
}

# The names A1111-style tools write in a PNG's `parameters` text.
SAMPLER_LABELS = {
    "euler_a": "Euler a",
    "euler": "Euler",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "dpmpp_2m_sde": "DPM++ 2M SDE",
    "dpmpp_2m_sde_karras": "DPM++ 2M SDE Karras",
    "dpmpp_sde": "DPM++ SDE",
    "dpmpp_sde_karras": "DPM++ SDE Karras",
    "ddim": "DDIM",
    "flow_match_euler": "Euler FlowMatch",  # Z-Image's and FLUX's only sampler
    "scheduler": "Default",  # a generic diffusers pipeline's own scheduler
    "unipc": "UniPC",
    "heun": "Heun",
    "lms": "LMS",
    "lms_karras": "LMS Karras",
}


def make_scheduler(
    name: str, base_config: dict, prediction_type: str, seed: int = 0, zero_snr: bool = False
):
    """Build the scheduler `name` from a model's scheduler config.

    `seed` is the image's seed; samplers with their own noise source use it, so every
    sampler repeats bit for bit for a given seed.
    """
    import diffusers

    if name not in SAMPLERS:
        raise InputError(f"unknown sampler '{name}'; expected one of: {', '.join(SAMPLERS)}")
    class_name, overrides = SAMPLERS[name]
    cls = getattr(diffusers, class_name)
    # A config read from disk lists the keys it lacked in `_use_default_values`, and
    # from_config silently ignores any key listed there, overrides included: drop it.
    config = {k: v for k, v in base_config.items() if k != "_use_default_values"}
    config.update(overrides)
    config["prediction_type"] = prediction_type
    if class_name == "DPMSolverSDEScheduler":
        config["noise_sampler_seed"] = seed
    if zero_snr:
        if class_name not in ZERO_SNR:
            raise InputError(f"sampler '{name}' does not support zero terminal SNR")
        config["rescale_betas_zero_snr"] = True
    if prediction_type == "v_prediction":
        config["timestep_spacing"] = "trailing"
    return cls.from_config(config)
