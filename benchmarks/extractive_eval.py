"""Extractive answers: how often does the answer quote the gold answer, and how long is it?

The retriever is fixed (the default hybrid, top 5, the default relevance gate, the prompt
fuser's sources exactly as ``ragmem ask`` builds them); only the answerer changes. For each
question about an ingested SQuAD v1.1 / CMRC 2018 article (the corpora of qa_corpus.py), the
answerer from before issue 13 (read from git at ``BEFORE``) and the current one answer from
the same sources, in the same run. Scored: the share of questions whose gold answer text (any
of them, case and spacing ignored) appears in the answer; the answer's length in words
(English) or characters (Chinese), citations left out; milliseconds per answer. Targets (issue
13): >= 0.70 per language and +15 points over the old answerer, at <= 60 words / 120 characters.

"now" is the answerer as ``ragmem ask`` runs it; "now, with the embedder's cosine" is the same
given the knowledge base's embedder (``ExtractiveAnswerer(embedder=...)``: the cosine between
question and sentence counts where the embedder reads the question's language, so English with
all-MiniLM-L6-v2), which is not the default because embedding the candidate sentences costs
far more time than the rest of the answer. The ceiling of any extract is the share of
questions whose gold answer text is in the sources at all. The answerer's weights were tuned on
the *tune* part (qa_corpus.py: by article); each row is given for the tune part, the held-out
*report* part and both.

Usage:
    nice -n 10 .venv/bin/python benchmarks/extractive_eval.py [--articles N] [--questions 300]
        [--home /tmp/ragmem-bench] [--part all|tune|report] [--out benchmarks/results/extractive_eval.json]
    full data: --articles 0 --questions 0
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import time
import types
from pathlib import Path

import qa_corpus as qc

BEFORE = "dc1819d"  # the commit whose rag_memory/generation/extractive.py is "before"
TOP_K = 5


def old_answerer():
    code = subprocess.run(
        ["git", "show", f"{BEFORE}:rag_memory/generation/extractive.py"], cwd=qc.ROOT, check=True,
        capture_output=True, text=True,
    ).stdout
    module = types.ModuleType("extractive_before")
    exec(compile(code, "extractive_before.py", "exec"), module.__dict__)
    return module.ExtractiveAnswerer()


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def contains(answer: str, golds) -> bool:
    a = _norm(answer)
    return any(_norm(g) in a for g in golds)


def length(answer: str, chinese: bool) -> int:
    text = re.sub(r"\[\d+\]", "", answer)
    return len(re.sub(r"\s+", "", text)) if chinese else len(text.split())


def cut_to_limit(answer: str, chinese: bool) -> str:
    """The old answer cut at the new one's length limit (60 words / 120 characters, citations
    not counted), for a comparison at equal length."""
    from rag_memory.generation.extractive import MAX_CHARS, MAX_WORDS

    if chinese:
        out, n = [], 0
        for piece in re.split(r"(\[\d+\])", answer):
            if re.fullmatch(r"\[\d+\]", piece):
                out.append(piece)
                continue
            room = MAX_CHARS - n
            kept = piece[:room]
            n += len(re.sub(r"\s+", "", kept))
            out.append(kept)
        return "".join(out)
    words, n, out = answer.split(), 0, []
    for w in words:
        if not re.fullmatch(r"\[\d+\]", w):
            if n == MAX_WORDS:
                break
            n += 1
        out.append(w)
    return " ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="squad,cmrc")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--articles", type=int, default=None, help="as in answer_gate.py (default: squad 16, cmrc 240)")
    ap.add_argument("--questions", type=int, default=400, help="questions per language; 0: all")
    ap.add_argument("--home", type=Path, default=None)
    ap.add_argument("--examples", type=int, default=0, help="print this many misses per language")
    ap.add_argument("--part", choices=("all", "tune", "report"), default="all",
                    help="ask only the questions of one part (default: all, scored per part)")
    ap.add_argument("--out", type=Path, default=qc.ROOT / "benchmarks/results/extractive_eval.json")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadiest on a shared machine)")
    args = ap.parse_args()
    qc.set_threads(args.threads)

    from rag_memory.generation.extractive import ExtractiveAnswerer
    from rag_memory.generation.openai_compatible import approximate_tokens
    from rag_memory.pipelines.fusion import PromptFuser
    from rag_memory.pipelines.rag import EXTRACTIVE_CONTEXT, relevant

    answerers = {"before": old_answerer(), "now": ExtractiveAnswerer()}
    fuser = PromptFuser(lambda msgs: sum(approximate_tokens(m.content) + 4 for m in msgs), approximate_tokens,
                        context_length=EXTRACTIVE_CONTEXT, max_new_tokens=512)
    defaults = {"squad": 16, "cmrc": 240}
    started = time.perf_counter()
    table, data = [], {}
    with qc.workdir(args.home) as work:
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            corpus = qc.load(name, args.data_dir, defaults[name] if args.articles is None else args.articles)
            parts, mapping = qc.ingest(corpus, Path(work), qc.progress)
            chinese = corpus.language == "zh"
            questions = qc.sample(corpus.present, args.questions)
            if args.part != "all":
                questions = [qa for qa in questions if qa.part == args.part]
            gate = parts.settings.relevance_gate
            answerers["now, with the embedder's cosine"] = ExtractiveAnswerer(embedder=parts.embedder,
                                                  embedder_languages=parts.settings.embedder_languages)
            parts.embedder.warm_up()
            kinds = ["before", "before, cut to the limit", "now", "now, with the embedder's cosine"]
            rows = []  # per question: part, gold passage in sources, gold text in sources, {kind: (ok, length, s)}
            misses = []
            for qa in questions:
                hits = [h for h in parts.retriever.retrieve(qa.question, top_k=TOP_K) if relevant(h, gate)]
                sources = fuser.fuse(qa.question, hits=hits).sources
                row = {"part": qa.part, "passage": any(mapping.get(h.source) == qa.passage for h in hits),
                       "text": any(contains(s.text, qa.answers) for s in sources), "by": {}}
                for key, answerer in answerers.items():
                    t = time.perf_counter()
                    answer = answerer.answer(qa.question, sources) if sources else ""
                    took = time.perf_counter() - t
                    ok = contains(answer, qa.answers)
                    row["by"][key] = (ok, length(answer, chinese), took)
                    if key == "before":
                        cut = cut_to_limit(answer, chinese)
                        row["by"]["before, cut to the limit"] = (contains(cut, qa.answers), length(cut, chinese), took)
                    if key == "now" and not ok and row["text"] and len(misses) < args.examples:
                        misses.append((qa.question, qa.answers[:2], answer))
                rows.append(row)
            for q, golds, answer in misses:
                print(f"MISS {q!r} gold={golds}\n     {answer[:400]!r}")
            unit = "chars" if chinese else "words"
            for part in ("tune", "report", "all"):
                chosen = [r for r in rows if part == "all" or r["part"] == part]
                n = max(len(chosen), 1)
                for key in kinds:
                    got = [r["by"][key] for r in chosen]
                    table.append({
                        "answerer": key, "language": corpus.language, "part": part, "questions": len(chosen),
                        "gold_in_answer": round(sum(g[0] for g in got) / n, 4),
                        "gold_passage_in_sources": round(sum(r["passage"] for r in chosen) / n, 4),
                        "gold_text_in_sources": round(sum(r["text"] for r in chosen) / n, 4),
                        f"mean_{unit}": round(statistics.mean(g[1] for g in got), 1) if got else 0,
                        f"max_{unit}": max((g[1] for g in got), default=0),
                        "ms_per_answer": round(1000 * sum(g[2] for g in got) / n, 2),
                    })
            data[name] = {**corpus.settings, "chunks": parts.store.count()}
            parts.lexical.close()
    print(f"\n{'answerer':33s} {'lang':4s} {'part':6s} {'n':>5s} {'gold_in_answer':>15s} {'passage_in_src':>15s}"
          f" {'text_in_src':>12s} {'mean_len':>9s} {'max_len':>8s} {'ms':>6s}")
    for r in table:
        mean = r.get("mean_words", r.get("mean_chars"))
        mx = r.get("max_words", r.get("max_chars"))
        print(f"{r['answerer']:33s} {r['language']:4s} {r['part']:6s} {r['questions']:5d} {r['gold_in_answer']:15.3f}"
              f" {r['gold_passage_in_sources']:15.3f} {r['gold_text_in_sources']:12.3f} {mean:9.1f} {mx:8d}"
              f" {r['ms_per_answer']:6.2f}")
    result = {
        "benchmark": "extractive_eval", "before": f"git {BEFORE}:rag_memory/generation/extractive.py",
        "top_k": TOP_K, "questions_per_language": args.questions, "part": args.part, "threads": args.threads,
        "data": data, "machine": qc.machine(),
        "seconds": round(time.perf_counter() - started, 1), "table": table,
        "length_units": {"en": "words", "zh": "characters, spaces and [n] citations left out"},
        "full_data_command": "nice -n 10 .venv/bin/python benchmarks/extractive_eval.py --articles 0 --questions 0",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
