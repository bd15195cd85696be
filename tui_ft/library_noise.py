"""Importing the training stack: once, quietly, with the settings tui-ft wants before the first import."""

from __future__ import annotations

import logging
import os
import warnings

_NOISY_LOGGERS = (
    # bitsandbytes warns on every import on CPUs with AVX512-BF16 that an optional kernel package is absent
    "bitsandbytes.backends.cpu.ops",
)


def quiet_library_noise() -> None:
    """Silence start-up warnings that are not about the user's run, before torch & co. are imported."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # Deprecations raised inside the libraries' own code are not the user's to act on.
    for module in ("transformers", "trl", "peft", "accelerate", "torch"):
        warnings.filterwarnings("ignore", category=FutureWarning, module=module)
    # Per-stage progress bars (weights loading, dataset maps) flood output.log; events carry progress.
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")
