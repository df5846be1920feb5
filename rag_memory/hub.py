"""ragmem and the Hugging Face hub: no telemetry ever, and no download unless asked.

huggingface_hub phones home on its own: building the headers of any hub call, even one that
reads only the local cache (``local_files_only=True``), it fetches a registry of "agent
harnesses" from the hub unless telemetry is off. ``no_telemetry`` turns that off; every module
that imports ``sentence_transformers``, ``transformers`` or ``huggingface_hub`` calls it first.
Downloads are a separate, explicit choice (the ``allow_downloads`` setting, or
``ragmem models pull``), passed to each loader as ``local_files_only``.
"""

from __future__ import annotations

import os
import sys

__all__ = ["no_telemetry"]


def no_telemetry() -> None:
    """Switch off huggingface_hub's telemetry requests, before or after it is imported."""
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # imported already: its constants were read at import
        constants.HF_HUB_DISABLE_TELEMETRY = True
