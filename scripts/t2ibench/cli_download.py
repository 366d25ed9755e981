"""``python tools/download_model.py URL``: fetch a checkpoint into the models folder.

The headless equivalent of the seed tool's "download model" form (url, name, source):
runs are never allowed to touch the network, so weights are fetched once, up front, with
this command, and the config then points at the file it prints.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

from t2ibench.errors import InputError
from t2ibench.models.download import ProgressPrinter, download_model


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python tools/download_model.py",
        description="Download a .safetensors checkpoint (Hugging Face resolve/ or CivitAI link).",
    )
    parser.add_argument("url", help="https:// download link")
    parser.add_argument("--name", help="file name without .safetensors (default: the server's)")
    parser.add_argument("--source", default="", help="where it comes from: HuggingFace, CivitAI…")
    parser.add_argument("--sha256", help="expected sha256; a mismatch removes the download")
    parser.add_argument("--models-dir", type=Path, default=Path("resources/models"))
    return parser


def _label(url: str, name: str | None) -> str:
    """What the progress line calls the download before the server has named the file."""
    return name or urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    printer = ProgressPrinter(_label(args.url, args.name) or "download")
    try:
        path = download_model(
            args.url,
            args.models_dir,
            name=args.name,
            sha256=args.sha256,
            source_tag=args.source,
            progress=printer,
        )
    except InputError as error:
        printer.close()
        print(f"t2ibench: error: {error}", file=sys.stderr)
        return 2
    printer.close()
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
