"""What the commands show while they work: progress bars on stderr (ours and those of the
libraries we drive) and the quiet mode that turns them all off, e.g. for ``--json`` output."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

_quiet = False
_saved_env: str | None = None  # HF_HUB_DISABLE_PROGRESS_BARS as it was before set_quiet(True)
_libraries_quieted = False


def set_quiet(quiet: bool = True) -> None:
    """Turn the model steps' progress bars off (``quiet=True``) or back on, for the whole
    process: ours, transformers' own ("Loading weights") and huggingface_hub's. For output
    that must stay machine-readable, e.g. the CLI's ``--json``. ``set_quiet(False)`` only
    undoes what ``set_quiet(True)`` did (a user's own HF_HUB_DISABLE_PROGRESS_BARS stays)."""
    global _quiet, _saved_env
    if quiet == _quiet:
        return
    _quiet = quiet
    if quiet:  # libraries imported from now on start with their bars off
        _saved_env = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    elif _saved_env is None:
        os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    else:
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = _saved_env
    if "transformers" in sys.modules:  # already imported: switch its bars now
        quiet_libraries()


def is_quiet() -> bool:
    """Whether progress bars are off (``set_quiet``), for steps that drive another library's."""
    return _quiet


def quiet_libraries() -> None:
    """Apply the quiet flag to transformers' and huggingface_hub's bars (imports both)."""
    global _libraries_quieted
    if _quiet == _libraries_quieted:
        return
    from transformers.utils import logging as hf_logging

    if _quiet:
        hf_logging.disable_progress_bar()  # also huggingface_hub's
    elif os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() not in ("1", "true", "yes", "on"):
        hf_logging.enable_progress_bar()
    _libraries_quieted = _quiet


def progress(iterable: Iterable | None = None, *, desc: str, total: float | None = None,
             unit: str = "it", **kw: Any) -> Any:
    """A tqdm bar on stderr, shown only once a step has run for half a second, and never
    when quiet."""
    from tqdm import tqdm

    kw = {"file": sys.stderr, "delay": 0.5, "leave": False, "dynamic_ncols": True, **kw}
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=_quiet, **kw)
