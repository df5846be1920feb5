"""`ragmem eval memory`: loaders (LoCoMo, LongMemEval, JSONL), scoring, and the command."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from rag_memory.errors import ConfigError
from rag_memory.eval.memory import (
    evaluate_memory,
    load_locomo,
    load_longmemeval,
    load_memory_jsonl,
    parse_selection,
    score_question,
)
from rag_memory.knowledge_base.embedders import HashingEmbedder
from rag_memory.schema import Memory

LOCOMO = [
    {
        "sample_id": "conv-x",
        "conversation": {
            "speaker_a": "Caroline", "speaker_b": "Melanie",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Caroline", "dia_id": "D1:1", "text": "I went to a support group yesterday."},
                {"speaker": "Melanie", "dia_id": "D1:2", "text": "That is wonderful! I painted a sunrise.",
                 "blip_caption": "a painting of a sunrise over a lake"},
            ],
            "session_2_date_time": "10:00 am on 20 May, 2023",
            "session_2": [
                {"speaker": "Caroline", "dia_id": "D2:1", "text": "I am researching adoption agencies."},
                {"speaker": "Melanie", "dia_id": "D2:2", "text": "My kids loved the camping trip to the lake."},
            ],
        },
        "qa": [
            {"question": "When did Caroline go to the support group?", "answer": "7 May 2023",
             "evidence": ["D1:1"], "category": 2},
            {"question": "What did Melanie paint?", "answer": "a sunrise", "evidence": ["D1:02"], "category": 4},
            {"question": "What is Caroline researching and where did Melanie camp?", "answer": "x",
             "evidence": ["D2:1; D2:2", "D", "D9:9"], "category": 1},
            {"question": "What did Caroline paint at the quantum lab?", "evidence": ["D1:2"], "category": 5},
        ],
    }
]


@pytest.fixture
def locomo_file(tmp_path):
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(LOCOMO), encoding="utf-8")
    return path


def test_locomo_loader_normalises_and_counts_malformed_evidence(locomo_file):
    data = load_locomo(locomo_file)
    [conv] = data.conversations
    assert [s.id for s in conv.sessions] == ["session_1", "session_2"]
    assert conv.sessions[0].date.isoformat() == "2023-05-08T13:56:00+00:00"
    assert "[shares a photo of a painting of a sunrise over a lake]" in conv.sessions[0].turns[1].text
    assert [q.evidence for q in conv.questions] == [("D1:1",), ("D1:2",), ("D2:1", "D2:2"), ("D1:2",)]
    assert data.dropped_evidence == 2  # "D" and the turn that does not exist
    assert data.normalised_evidence == 2  # "D1:02" and the "; "-joined pair


def test_scoring_counts_the_turns_a_unit_holds():
    mems = [Memory("a", "u", "session_2", "x", "turn", "", turn="session_2:D2:1"),
            Memory("b", "u", "session_1", "y", "turn", "", turn="session_1:D1:1")]
    sessions = {"D1:1": "session_1", "D2:1": "session_2", "D2:2": "session_2"}
    row = score_question(mems, ["D2:1", "D2:2"], sessions)
    assert row == {"recall": 0.5, "any": 1.0, "all": 0.0, "session_hit@1": 1.0, "mrr": 1.0}
    assert score_question(mems[1:], ["D2:1"], sessions)["mrr"] == 0.0


def test_the_eval_replays_in_batches_and_reports_every_figure(locomo_file, settings):
    data = load_locomo(locomo_file)
    result = evaluate_memory(data, settings, budget=200, embedder=HashingEmbedder(256), budgets=[50, 200])
    out = result.as_json()
    assert {"dataset", "questions", "budget", "default", "results"} <= set(out)
    default = out["results"][out["default"]]
    assert {"recall", "any", "all", "session_hit@1", "mrr", "tokens_per_question", "p50_ms", "p95_ms",
            "by_category"} <= set(default)
    assert out["questions"] == 3 and set(default["by_category"]) == {"1", "2", "4", "adversarial"}
    assert default["by_category"]["4"]["recall"] == 1.0  # "What did Melanie paint?" finds D1:2
    assert 0 <= default["by_category"]["adversarial"]["nothing_injected"] <= 1
    assert set(default["recall_by_budget"]) == {"50", "200"}
    assert out["conversation_tokens"] > 0 and out["dropped_evidence"] == 2


def test_longmemeval_format_loads_evidence_turns_and_abstentions(tmp_path):
    path = tmp_path / "lme.json"
    path.write_text(json.dumps([
        {"question_id": "q1", "question_type": "single-session-user", "question": "Where did I buy my bike?",
         "answer": "Decathlon", "question_date": "2023/06/01 (Thu) 10:00",
         "haystack_session_ids": ["s-a", "s-b"], "haystack_dates": ["2023/05/01 (Mon) 09:00", "2023/05/20 (Sat) 02:21"],
         "haystack_sessions": [
             [{"role": "user", "content": "I bought my bike at Decathlon.", "has_answer": True},
              {"role": "assistant", "content": "Nice!"}],
             [{"role": "user", "content": "Any tips for tomatoes?"}, {"role": "assistant", "content": "Sun."}],
         ], "answer_session_ids": ["s-a"]},
        {"question_id": "q2_abs", "question_type": "single-session-user", "question": "What is my cat's name?",
         "answer": "never mentioned", "question_date": "2023/06/01 (Thu) 10:00",
         "haystack_session_ids": ["s-c"], "haystack_dates": ["2023/05/02 (Tue) 09:00"],
         "haystack_sessions": [[{"role": "user", "content": "Hello there."}]], "answer_session_ids": ["s-c"]},
    ]), encoding="utf-8")
    data = load_longmemeval(path)
    first, second = data.conversations
    assert first.questions[0].evidence == ("s-a#0",) and first.sessions[1].date.day == 20
    assert first.sessions[0].turns[1].speaker == "Assistant"
    assert second.questions[0].category == "abstention" and second.questions[0].evidence == ("s-c#0",)


def test_jsonl_format_with_chinese_and_clear_errors(tmp_path, settings):
    path = tmp_path / "mine.jsonl"
    conv = {"id": "c1", "sessions": [
        {"id": "s1", "date": "2024-01-08T09:00:00", "turns": [
            {"id": "t1", "speaker": "李雷", "text": "我家的猫叫豆豆。"}, {"id": "t2", "speaker": "韩梅梅", "text": "好可爱！"}]},
        {"id": "s2", "date": "2024-03-08T09:00:00", "turns": [
            {"id": "t3", "speaker": "李雷", "text": "我们组的周会改到周四下午了。"}]},
    ], "questions": [{"question": "李雷的猫叫什么？", "evidence": ["t1", "nope"]},
                     {"question": "我们组的周会改到哪天了？", "evidence": ["t3"], "category": "updated"}]}
    path.write_text(json.dumps(conv, ensure_ascii=False) + "\n", encoding="utf-8")
    data = load_memory_jsonl(path)
    assert data.dropped_evidence == 1 and data.conversations[0].questions[0].evidence == ("t1",)
    result = evaluate_memory(data, settings, budget=100, embedder=HashingEmbedder(256))
    assert result.results[result.default]["recall"] == 1.0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "c1", "sessions": [{"turns": [{"text": "no id"}]}]}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: session 0: each turn needs"):
        load_memory_jsonl(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_memory_jsonl(tmp_path / "missing.jsonl")


def test_selection_parsing():
    assert parse_selection("0-2,7") == [0, 1, 2, 7]
    with pytest.raises(ConfigError, match="not valid"):
        parse_selection("a-b")


def test_the_command_prints_json_and_draws_a_plot(locomo_file, tmp_path, monkeypatch):
    from rag_memory.cli.eval import eval_app

    monkeypatch.setenv("RAGMEM_EMBEDDER", "hashing:256")
    cli = typer.Typer()
    cli.add_typer(eval_app, name="eval")
    plot = tmp_path / "budget.png"
    result = CliRunner().invoke(cli, ["eval", "memory", "--dataset", "locomo", "--data-dir", str(tmp_path / "d"),
                                      "--json"])
    assert result.exit_code == 1 and "not found" in result.output
    data_dir = tmp_path / "d" / "locomo"
    data_dir.mkdir(parents=True)
    (data_dir / "locomo10.json").write_text(locomo_file.read_text(encoding="utf-8"), encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", "memory", "--dataset", "locomo", "--data-dir", str(tmp_path / "d"),
                                      "--strategies", "bm25,default", "--plot", str(plot), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert set(out["results"]) == {"bm25", "default"} and out["default"] == "default"
    assert plot.stat().st_size > 1000
