"""``nas data build-digits``: rebuild the shipped digits data set from the FSDD WAVs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nas.errors import UserError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``nas data``."""
    p = subparsers.add_parser(
        "data", help="build the shipped digits data set",
        description="Build the digits data set (--data digits) from the Free Spoken Digit "
                    "Dataset's WAVs and scikit-learn's handwritten digits. The output is the "
                    "same bytes on every run; by default it replaces the copy shipped in the "
                    "package. Needs scikit-learn (pip install 'nas[data]').")
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    b = sub.add_parser("build-digits", help="build digits.npz from the FSDD recordings",
                       description="Build digits.npz (+ .sha256) from the FSDD recordings "
                                   "folder ({digit}_{speaker}_{index}.wav, 8 kHz).")
    b.add_argument("--fsdd", metavar="DIR", default=os.environ.get("NAS_FSDD_DIR"),
                   help="the FSDD recordings/ folder (default: $NAS_FSDD_DIR)")
    b.add_argument("--out", metavar="FILE", default=None,
                   help="where to write (default: the package's nas/data/digits/digits.npz)")
    b.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Build, then write the .npz, its .sha256 and (outside the package) NOTICE.md atomically."""
    from nas._io import atomic_open
    from nas.data.digits import shipped_path
    from nas.data.digits_build import build_digits

    if not args.fsdd:
        raise UserError("--fsdd: give the FSDD recordings folder (or set NAS_FSDD_DIR)")
    out = Path(args.out).expanduser() if args.out else shipped_path()
    path, digest = build_digits(args.fsdd, out)
    notice = shipped_path().with_name("NOTICE.md")
    if path.parent.resolve() != notice.parent.resolve() and notice.is_file():
        with atomic_open(path.parent / "NOTICE.md", "w") as f:  # the licence travels with copies
            f.write(notice.read_text())
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, sha256 {digest}) and "
          f"{path.name}.sha256; the audio features are CC BY-SA 4.0 (NOTICE.md beside it)")
    return 0
