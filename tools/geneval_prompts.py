"""Write GenEval's prompt suite, made by t2ibench.geneval.suite from GenEval's task
definitions: `evaluation_metadata.jsonl` (one prompt and its metadata a line, GenEval's
format, which `prompts.sources` reads) to `--output` (default prompts/geneval.jsonl).

The defaults (seed 43, 100 draws per task) give GenEval's own 553 prompts, byte for
byte; other seeds or sizes give other suites of the same tasks.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def main() -> None:
    from t2ibench.geneval.suite import generate_suite, metadata_lines
    from t2ibench.io import write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=43)
    parser.add_argument("--per-task", type=int, default=100)
    parser.add_argument("--output", type=Path, default=Path("prompts/geneval.jsonl"))
    args = parser.parse_args()
    suite = generate_suite(args.seed, args.per_task)
    write_text(args.output, metadata_lines(suite))
    counts = ", ".join(f"{tag} {n}" for tag, n in Counter(s["tag"] for s in suite).items())
    print(f"{args.output}: {len(suite)} prompts ({counts})")


if __name__ == "__main__":
    main()
