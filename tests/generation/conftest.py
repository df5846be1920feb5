"""A tiny random-weight chat model, built once per session, for the real transformers code paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny_model import build_tiny_chat_model


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory) -> Path:
    """A folder holding a two-layer Qwen2 with a ChatML template and an English+Chinese BPE tokenizer."""
    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny-chat-model"))
