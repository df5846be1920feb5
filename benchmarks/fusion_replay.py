"""Replay hybrid fusion offline on the candidate lists ``embedder_compare.py --dump`` recorded.

Every recorded query's dense and BM25 candidates go through ``rag_memory.knowledge_base.hybrid``'s
own ``fusion_weight`` and ``fuse`` (and duplicate collapsing), so a change to fusion can be scored
on the full SQuAD and CMRC dev sets in minutes, without embedding anything again. Replaying the
code the run used reproduces its hybrid figures.

Questions are split by article into two halves (``tune``: even-numbered articles in order of
first appearance, ``held-out``: odd), so a fusion constant tuned on one half can be reported on
the other. Edit the fusion in ``hybrid.py``, replay, compare.

Columns: hit@1, hit@5 and MRR@10 of the tune half, the held-out half and all questions.

Usage:
    .venv/bin/python benchmarks/fusion_replay.py DUMP.json.gz [DUMP.json.gz ...]
        [--out benchmarks/results/fusion_replay.json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag_memory.eval.retrieval import CHUNK_DEPTH, dedupe, score_rankings  # noqa: E402
from rag_memory.knowledge_base import hybrid  # noqa: E402
from rag_memory.schema import Hit  # noqa: E402


def load(path: Path) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def article(passage_id: str) -> str:
    """SQuAD's passage ids are aNNNpMMM (article NNN); any other passage is its own article."""
    m = re.fullmatch(r"(a\d+)p\d+", passage_id)
    return m.group(1) if m else passage_id


def halves(dump: dict) -> dict[str, list[int]]:
    """Question indices of the tune half (even articles) and the held-out half (odd articles)."""
    order: dict[str, int] = {}
    for q in dump["questions"]:
        order.setdefault(article(q["relevant"][0]), len(order))
    split: dict[str, list[int]] = {"tune": [], "held-out": []}
    for i, q in enumerate(dump["questions"]):
        split["tune" if order[article(q["relevant"][0])] % 2 == 0 else "held-out"].append(i)
    return split


def candidates(dump: dict, i: int) -> tuple[float, list[Hit], list[Hit]]:
    """Question ``i``'s dense prior and its recorded dense and BM25 candidates, as ``Hit``s whose
    ``source`` is the passage id."""
    chunks = dump["chunks"]

    def hits(pairs):
        return [Hit(chunk_id=c, text=chunks[c]["text"], score=s, source=chunks[c]["passage"]) for c, s in pairs]

    rec = dump["queries"][i]
    return hybrid.dense_prior(dump["questions"][i]["question"], dump["embedder"]), hits(rec["dense"]), hits(rec["bm25"])


def replay(dump: dict, indices: list[int] | None = None) -> dict:
    """Hybrid metrics of the recorded queries under the current fusion code."""
    rankings, relevant = [], []
    for i in indices if indices is not None else range(len(dump["questions"])):
        prior, dense, lexical = candidates(dump, i)
        weight = hybrid.fusion_weight(prior, [h.score for h in dense], [h.score for h in lexical])
        fused = hybrid.collapse_duplicates(hybrid.fuse(dense, lexical, weight))[:CHUNK_DEPTH]
        rankings.append(dedupe([h.source for h in fused]))
        relevant.append(dump["questions"][i]["relevant"])
    m = score_rankings(rankings, relevant, [0.0] * len(rankings)).as_json()
    return {k: v for k, v in m.items() if not k.endswith("_ms")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dumps", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = []
    for path in args.dumps:
        dump = load(path)
        row = {"dump": path.name, "dataset": dump["dataset"], "embedder": dump["embedder"],
               "questions": len(dump["questions"]), "all": replay(dump)}
        for half, idx in halves(dump).items():
            row[half] = {"questions": len(idx), **replay(dump, idx)}
        out.append(row)
        print(f"{row['dataset']:6s} {row['embedder'][-24:]:24s}", "  ".join(
            f"{part} {row[part]['hit@1']:.4f} {row[part]['hit@5']:.4f} {row[part]['mrr@10']:.4f}"
            for part in ("tune", "held-out", "all")), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"script": "benchmarks/fusion_replay.py", "runs": out}, indent=2) + "\n")


if __name__ == "__main__":
    main()
