"""The seeded SQuAD / CMRC corpora shared by answer_gate.py, extractive_eval.py and followup_eval.py.

A data set's articles are shuffled with a fixed seed and split in two: the first half is
ingested through ragmem's normal ingest path (one file per paragraph), the second half is
"missing". Each half is split again into a tune part and a report part, so a default tuned on
one part is reported on the other. ``--articles N`` keeps N articles per language (N/2 present,
N/2 missing) so a run fits in minutes on two cores; ``--articles 0`` uses every article.

The ingested home can be kept (``--home DIR``): a second run with the same data re-ingests
nothing (ragmem's ingest is a no-op on unchanged files), so later runs only ask questions.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag_memory.eval.retrieval import data_file  # noqa: E402 - after the path set-up

FILES = {"squad": Path("squad-v1.1") / "dev-v1.1.json", "cmrc": Path("cmrc2018") / "cmrc2018_dev.json"}
LANG = {"squad": "en", "cmrc": "zh"}
SEED = 13


@dataclass(frozen=True)
class QA:
    id: str
    question: str
    answers: tuple[str, ...]
    passage: str  # the paragraph's id
    article: int
    part: str  # "tune" or "report"


@dataclass
class Corpus:
    name: str
    language: str
    present: list[QA]  # questions about ingested articles
    missing: list[QA]  # questions about articles that were not ingested
    passages: dict[str, str]  # paragraph id -> text, every article
    articles: dict[int, list[str]]  # article index -> its paragraph ids, in order
    titles: dict[int, str] = field(default_factory=dict)
    settings: dict = field(default_factory=dict)


def set_threads(n: int = 1) -> None:
    """Torch CPU threads. One is many times faster than torch's default on a shared, busy
    machine (threads fight for the cores); results record the number."""
    import torch

    torch.set_num_threads(n)


def load(name: str, directory: Path | None, articles: int, seed: int = SEED) -> Corpus:
    """The data set split into present / missing halves and tune / report parts (by article)."""
    path = data_file(FILES[name], directory)
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    if articles:
        order = order[:articles]
    half = len(order) // 2
    present_ids, missing_ids = order[:half], order[half:]
    passages: dict[str, str] = {}
    by_article: dict[int, list[str]] = {}
    titles: dict[int, str] = {}
    present: list[QA] = []
    missing: list[QA] = []
    for ids, out in ((present_ids, present), (missing_ids, missing)):
        for rank, ai in enumerate(ids):
            article = data[ai]
            titles[ai] = article.get("title") or ""
            part = "tune" if rank % 2 == 0 else "report"
            for pi, para in enumerate(article["paragraphs"]):
                pid = f"{name}-a{ai:03d}p{pi:03d}"
                passages[pid] = para["context"]
                by_article.setdefault(ai, []).append(pid)
                for qa in para["qas"]:
                    answers = tuple(dict.fromkeys(a["text"].strip() for a in qa["answers"] if a["text"].strip()))
                    out.append(QA(str(qa["id"]), qa["question"].strip(), answers, pid, ai, part))
    return Corpus(
        name, LANG[name], present, missing, passages, by_article, titles,
        {"file": str(FILES[name]), "articles_in_file": len(data), "articles_used": len(order),
         "present_articles": len(present_ids), "missing_articles": len(missing_ids), "seed": seed},
    )


def sample(items: list, n: int, seed: int = SEED) -> list:
    """``n`` items picked with a fixed seed (all of them when n is 0 or more than there are)."""
    if not n or n >= len(items):
        return list(items)
    return sorted(random.Random(seed).sample(items, n), key=items.index)


def ingest(corpus: Corpus, home: Path, progress) -> tuple[object, dict[str, str]]:
    """Ingest the present articles' paragraphs under ``home``; returns the components and a map
    from each file's path to its paragraph id."""
    from rag_memory.config import Settings
    from rag_memory.eval.retrieval import Passage, write_passages
    from rag_memory.pipelines.components import Components

    # Every paragraph of a present article is ingested, asked about or not.
    present_articles = {qa.article for qa in corpus.present}
    ids = [pid for ai in sorted(present_articles) for pid in corpus.articles[ai]]
    folder = home / f"passages-{corpus.name}"
    mapping = write_passages([Passage(pid, corpus.passages[pid]) for pid in ids], folder)
    settings = Settings.load({"home": str(home / "home"), "collection": f"bench-{corpus.name}"})
    parts = Components(settings)
    progress(f"{corpus.name}: ingesting {len(ids)} paragraphs of {len(present_articles)} articles")
    report = parts.ingestor().run([folder])
    progress(f"{corpus.name}: {len(report.added)} files added, {len(report.unchanged)} unchanged,"
             f" {parts.store.count()} chunks")
    return parts, mapping


def workdir(home: Path | None):
    """The folder the corpora are ingested under: ``home`` (kept) or a temporary one."""
    if home is not None:
        home.mkdir(parents=True, exist_ok=True)
        return _Kept(home)
    return tempfile.TemporaryDirectory(prefix="ragmem-bench-", ignore_cleanup_errors=True)


class _Kept:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> str:
        return str(self.path)

    def __exit__(self, *exc) -> None:
        return None


def machine() -> dict:
    import torch

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}


def progress(msg: str) -> None:
    import time

    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
