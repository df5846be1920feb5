"""The fusion replay (benchmarks/fusion_replay.py) reproduces a run from what it recorded."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from unittest import mock

import pytest

from rag_memory.eval.retrieval import evaluate_retrieval, load_jsonl
from rag_memory.knowledge_base import hybrid
from rag_memory.knowledge_base.keyword_index import BM25Index
from tests.eval.test_retrieval_eval import jsonl_data  # noqa: F401 - the fixture

ROOT = Path(__file__).resolve().parents[2]


def script(name: str):
    """A benchmark script as a module; its environment defaults (offline hub ...) stay in it."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ):
        spec.loader.exec_module(module)
    return module


def test_replaying_the_recorded_candidates_gives_the_runs_hybrid_figures(settings, jsonl_data, tmp_path):  # noqa: F811
    compare, replay = script("embedder_compare"), script("fusion_replay")
    originals = (hybrid.fuse, BM25Index.max_score, BM25Index.term_weights, BM25Index.upsert_records)
    data = load_jsonl(*jsonl_data, name="mine")
    with compare.CandidateRecorder(True) as recorder:
        result = evaluate_retrieval(data, settings, modes=("hybrid",))
    assert (hybrid.fuse, BM25Index.max_score, BM25Index.term_weights, BM25Index.upsert_records) == originals
    recorder.write(tmp_path / "mine.json.gz", data, result.embedder)

    dump = replay.load(tmp_path / "mine.json.gz")
    assert len(dump["queries"]) == len(data.questions) == 7
    for i, rec in enumerate(dump["queries"]):
        prior, dense, lexical = replay.candidates(dump, i)
        assert dense and lexical and rec["terms"] and rec["ceiling"] > 0
        assert {h.source for h in dense + lexical} <= {p.id for p in data.passages}
        weight = hybrid.fusion_weight(prior, [h.score for h in dense], [h.score for h in lexical])
        assert weight == pytest.approx(rec["w"], abs=1e-4)  # scores are kept to 6 decimals
    # the Chinese questions (indices 4-6) get the hashing embedder's full multilingual prior
    assert replay.candidates(dump, 4)[0] == hybrid.DEFAULT_DENSE_WEIGHT
    live = {k: v for k, v in result.results["hybrid"].as_json().items() if not k.endswith("_ms")}
    assert replay.replay(dump) == live
    halves = replay.halves(dump)
    assert sorted(halves["tune"] + halves["held-out"]) == list(range(7)) and halves["tune"] and halves["held-out"]
