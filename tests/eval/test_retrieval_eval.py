"""`ragmem eval retrieval`: loaders, metrics, the end-to-end run and the CLI sub-app."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rag_memory.errors import ConfigError
from rag_memory.eval.retrieval import (
    dedupe,
    evaluate_retrieval,
    hit_at,
    load_dataset,
    load_jsonl,
    load_squad_format,
    ndcg_at,
    percentile,
    reciprocal_rank,
    safe_file_name,
    score_rankings,
)

PASSAGES = [
    {"id": "fr", "text": "Paris is the capital and largest city of France.", "title": "France"},
    {"id": "de", "text": "Berlin is the capital of Germany and its largest city."},
    {"id": "nfl/50", "text": "The Denver Broncos defeated the Carolina Panthers 24-10 to win Super Bowl 50."},
    {"id": "rhine", "text": "The Rhine flows through Switzerland, Germany and the Netherlands to the North Sea."},
    {"id": "tea", "text": "Green tea is made from leaves that are steamed or pan-fired soon after picking."},
    {"id": "zh:capital", "text": "北京是中华人民共和国的首都，也是全国的政治和文化中心。"},
    {"id": "zh:river", "text": "长江是中国第一长河，全长约6300公里，流经十一个省级行政区。"},
    {"id": "zh:panda", "text": "大熊猫主要生活在四川、陕西和甘肃的山区，以竹子为食。"},
]
QUESTIONS = [
    {"question": "What is the capital of France?", "relevant": ["fr"]},
    {"question": "Which team won Super Bowl 50?", "relevant": ["nfl/50"]},
    {"question": "Where does the Rhine flow?", "relevant": ["rhine"]},
    {"question": "Which cities are capitals?", "relevant": ["fr", "de"]},
    {"question": "中国的首都是哪个城市？", "relevant": ["zh:capital"]},
    {"question": "大熊猫吃什么？", "relevant": ["zh:panda"]},
    {"question": "长江全长多少公里？", "relevant": ["zh:river"]},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def jsonl_data(tmp_path) -> tuple[Path, Path]:
    return write_jsonl(tmp_path / "p.jsonl", PASSAGES), write_jsonl(tmp_path / "q.jsonl", QUESTIONS)


def squad_file(path: Path) -> Path:
    """A SQuAD-format file: two articles, three paragraphs, five questions."""
    data = {"data": [
        {"title": "A", "paragraphs": [
            {"context": "Alpha one.", "qas": [{"id": "1", "question": "q1", "answers": [{"text": "x", "answer_start": 99}]},
                                              {"id": "2", "question": "q2", "answers": []}]},
            {"context": "Alpha two.", "qas": [{"id": "3", "question": "q3", "answers": []}]},
        ]},
        {"title": "B", "paragraphs": [
            {"id": "B_0", "context": "Beta.", "qas": [{"id": "4", "question": "q4", "answers": []},
                                                      {"id": "5", "question": "q5", "answers": []}]},
        ]},
    ]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# -- metrics ---------------------------------------------------------------------------------


def test_hit_and_reciprocal_rank_by_hand():
    ranking = ["x", "y", "r", "z"]
    assert [hit_at(ranking, {"r"}, k) for k in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert reciprocal_rank(ranking, {"r"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(ranking, {"r"}, k=2) == 0.0
    assert reciprocal_rank(ranking, {"y", "r"}) == 0.5
    assert reciprocal_rank([], {"r"}) == 0.0


def test_ndcg_with_binary_relevance_by_hand():
    assert ndcg_at(["r"], {"r"}) == 1.0
    assert ndcg_at(["x", "r"], {"r"}) == pytest.approx(1 / math.log2(3))  # 0.6309
    # two relevant at ranks 1 and 3: (1 + 1/log2 4) / (1 + 1/log2 3)
    assert ndcg_at(["r1", "x", "r2"], {"r1", "r2"}) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at(["x"] * 10 + ["r"], {"r"}) == 0.0


def test_percentiles_and_passage_dedupe():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)
    assert percentile([], 50) == 0.0
    assert dedupe(["b", "a", "b", None, "c", "a"]) == ["b", "a", "c"]


def test_score_rankings_averages_over_questions():
    m = score_rankings([["a", "b"], ["c", "a"]], [["a"], ["a"]], [0.010, 0.030])
    assert m.hits == {1: 0.5, 5: 1.0, 10: 1.0}
    assert m.mrr10 == pytest.approx(0.75)
    assert m.p50_ms == pytest.approx(20.0)
    assert set(m.as_json()) == {"hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms"}


# -- loaders -----------------------------------------------------------------------------------


def test_squad_format_relevance_is_the_paragraph_asked_about(tmp_path):
    data = load_squad_format(squad_file(tmp_path / "d.json"), name="tiny")
    assert [p.id for p in data.passages] == ["a000p000", "a000p001", "B_0"]
    assert [q.relevant for q in data.questions] == [("a000p000",), ("a000p000",), ("a000p001",), ("B_0",), ("B_0",)]


def test_limit_spreads_questions_and_keeps_their_articles_passages(tmp_path):
    data = load_squad_format(squad_file(tmp_path / "d.json"), limit=2)
    assert [q.question for q in data.questions] == ["q1", "q3"]
    assert [p.id for p in data.passages] == ["a000p000", "a000p001"]


def test_named_dataset_is_read_from_the_data_folder(tmp_path):
    squad_file(tmp_path / "squad-v1.1" / "dev-v1.1.json")
    assert load_dataset("squad", data_dir=tmp_path).name == "squad"
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("msmarco", data_dir=tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_dataset("cmrc", data_dir=tmp_path)


def test_jsonl_loader_checks_ids(tmp_path, jsonl_data):
    passages, questions = jsonl_data
    data = load_jsonl(passages, questions)
    assert len(data.passages) == 8 and data.passages[0].title == "France"
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "relevant": ["nope"]}])
    with pytest.raises(ConfigError, match="nope"):
        load_jsonl(passages, bad)
    dup = write_jsonl(tmp_path / "dup.jsonl", [PASSAGES[0], PASSAGES[0]])
    with pytest.raises(ConfigError, match="twice"):
        load_jsonl(dup, questions)
    (tmp_path / "broken.jsonl").write_text('{"id": "x", "text": "y"}\nnot json\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=":2"):
        load_jsonl(tmp_path / "broken.jsonl", questions)


def test_safe_file_names_are_distinct_and_plain():
    names = {safe_file_name(i) for i in ["a/b", "a_b", "a:b", "../x", ".hidden", "长江"]}
    assert len(names) == 6
    assert all("/" not in n and not n.startswith(".") and n.endswith(".txt") for n in names)
    assert safe_file_name("plain-id_1.2") == "plain-id_1.2.txt"


# -- end to end --------------------------------------------------------------------------------


def test_evaluate_retrieval_end_to_end_on_jsonl(settings, jsonl_data):
    stages: dict[str, tuple[int, int]] = {}
    data = load_jsonl(*jsonl_data, name="mine")
    result = evaluate_retrieval(data, settings, progress=lambda s, d, t: stages.__setitem__(s, (d, t)))
    out = result.as_json()
    assert set(out) == {"dataset", "questions", "passages", "results"}
    assert (out["dataset"], out["questions"], out["passages"]) == ("mine", 7, 8)
    assert set(out["results"]) == {"dense", "bm25", "hybrid"}
    for m in out["results"].values():
        assert set(m) == {"hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms"}
        assert 0.0 <= m["hit@1"] <= m["hit@5"] <= m["hit@10"] <= 1.0
    assert out["results"]["bm25"]["hit@1"] == 1.0
    assert out["results"]["hybrid"]["hit@5"] == 1.0
    assert result.chunks >= 8 and result.embedder == "hashing:64"
    assert stages["ingest"] == (8, 8) and stages["hybrid"] == (7, 7)
    # nothing landed in the user's own home
    assert not settings.chroma_path.exists()


def test_ingest_keeps_the_keyword_index_in_step(settings, tmp_path):
    """Ingest's own hook: adds, changes, deletions and --rebuild reach the BM25 index."""
    from rag_memory.pipelines.components import Components

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Paris is the capital of France.", encoding="utf-8")
    (docs / "b.txt").write_text("北京是中国的首都。", encoding="utf-8")
    parts = Components(settings)
    lexical = parts.lexical
    parts.ingestor().run([docs])
    assert lexical.ids() == parts.store.ids() and lexical.count() == 2
    (docs / "a.txt").write_text("Lyon is a city on the Rhone.", encoding="utf-8")
    (docs / "b.txt").unlink()
    parts.ingestor().run([docs])
    assert lexical.ids() == parts.store.ids() and lexical.count() == 1
    assert lexical.search("Rhone", k=1)[0].source.endswith("a.txt")
    parts.ingestor().run([docs], rebuild=True)
    assert lexical.ids() == parts.store.ids()


# -- the CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch):
    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing:64")
    from rag_memory.cli.eval import eval_app

    app = typer.Typer()
    app.add_typer(eval_app, name="eval")

    def run(*args: str):
        return CliRunner().invoke(app, list(args))

    return run


def test_cli_json_output_has_the_documented_schema(cli, jsonl_data):
    passages, questions = jsonl_data
    result = cli("eval", "retrieval", "--passages", str(passages), "--questions", str(questions), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out) == {"dataset", "questions", "passages", "results"}
    assert set(out["results"]) == {"dense", "bm25", "hybrid"}
    assert set(out["results"]["hybrid"]) == {"hit@1", "hit@5", "hit@10", "mrr@10", "ndcg@10", "p50_ms", "p95_ms"}


def test_cli_table_for_a_named_dataset_with_limit(cli, tmp_path):
    squad_file(tmp_path / "data" / "squad-v1.1" / "dev-v1.1.json")
    result = cli("eval", "retrieval", "--dataset", "squad", "--data-dir", str(tmp_path / "data"), "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "hybrid" in result.stdout and "MRR@10" in result.stdout and "2 questions" in result.stdout


def test_cli_says_what_to_evaluate(cli, jsonl_data):
    result = cli("eval", "retrieval")
    assert result.exit_code == 1 and "--dataset" in result.output
    both = cli("eval", "retrieval", "--dataset", "squad", "--passages", str(jsonl_data[0]))
    assert both.exit_code == 1 and "not both" in both.output


def test_cli_plot_draws_hit_at_k_curves_and_latency_histograms(cli, jsonl_data, tmp_path):
    pytest.importorskip("matplotlib")
    passages, questions = jsonl_data
    out = tmp_path / "figs" / "eval.png"
    result = cli("eval", "retrieval", "--passages", str(passages), "--questions", str(questions), "--plot", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    bad = cli("eval", "retrieval", "--passages", str(passages), "--questions", str(questions),
              "--plot", str(tmp_path / "eval.txt"))
    assert bad.exit_code == 1 and ".png" in bad.output


def test_the_hit_curve_rises_with_k_to_the_reported_cutoffs():
    from rag_memory.eval.retrieval import score_rankings

    m = score_rankings([["x", "a"], ["b"], ["y", "z", "c"]], [["a"], ["b"], ["q"]], [0.001, 0.002, 0.003])
    assert m.curve[1] == pytest.approx(1 / 3) and m.curve[2] == pytest.approx(2 / 3)
    assert m.curve[10] == m.hits[10] and m.curve[5] == m.hits[5]
    assert m.latencies_ms == pytest.approx([1.0, 2.0, 3.0])
