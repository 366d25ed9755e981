"""Experiments, models and the plan: `python scripts/cli.py {experiments,models,plan}`.

See `python scripts/cli.py --help` and the README.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from t2ibench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
