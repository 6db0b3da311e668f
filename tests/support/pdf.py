"""Checks on a PDF a browser printed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

#: A printed one-page report with charts is well above this; an empty page is a few kB.
MIN_PDF_BYTES = 20_000


def pdf_pages(path: Path) -> int:
    """Pages as poppler renders them when pdftoppm is installed, else counted in the PDF's page tree."""
    if shutil.which("pdftoppm"):
        out = path.with_suffix("")
        subprocess.run(["pdftoppm", "-r", "40", "-png", str(path), str(out)], check=True, timeout=60)
        return len(list(path.parent.glob(f"{out.name}-*.png")))
    return len(re.findall(rb"/Type\s*/Page[^s]", path.read_bytes()))
