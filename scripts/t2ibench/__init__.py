"""t2ibench: benchmark text-to-image checkpoints and sweep their settings.

The package holds all the logic; the Snakemake rules under ``rules/`` are thin
wrappers that call it.
"""

__version__ = "0.1.0"
