"""Download one model by URL, headless: `python tools/download_model.py URL [--name N]`.

The equivalent of the seed tool's `POST /api/models/download` (url, name, source tag);
see `python tools/download_model.py --help`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from t2ibench.cli_download import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
