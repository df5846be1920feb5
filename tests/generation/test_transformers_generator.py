from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag_memory.errors import ConfigError, GenerationError
from rag_memory.generation import ChatMessage, GenerationConfig, TransformersGenerator

REPO = Path(__file__).resolve().parents[2]

QUESTION = [
    ChatMessage("system", "You answer from the knowledge base."),
    ChatMessage("user", "What is retrieval-augmented generation?"),
]


@pytest.fixture
def generator(tiny_chat_model) -> TransformersGenerator:
    gen = TransformersGenerator(str(tiny_chat_model), device="cpu")
    gen.warm_up()
    return gen


def test_stream_pieces_join_to_the_greedy_answer(generator):
    config = GenerationConfig(max_new_tokens=24)

    answer = generator.generate(QUESTION, config)
    pieces = list(generator.stream(QUESTION, config))

    assert len(pieces) > 1
    assert all(pieces)
    assert "".join(pieces) == answer
    assert answer.strip()


def test_greedy_decoding_repeats_itself(generator):
    config = GenerationConfig(max_new_tokens=12)
    assert generator.generate(QUESTION, config) == generator.generate(QUESTION, config)


def test_max_new_tokens_caps_the_completion(generator):
    generator.generate(QUESTION, GenerationConfig(max_new_tokens=7))
    usage = generator.last_usage

    assert 1 <= usage.completion_tokens <= 7
    assert usage.prompt_tokens == generator.count_message_tokens(QUESTION)
    assert 0 < usage.seconds_to_first_token <= usage.seconds_total


def test_stream_records_usage(generator):
    pieces = list(generator.stream(QUESTION, GenerationConfig(max_new_tokens=9)))
    usage = generator.last_usage

    assert 1 <= usage.completion_tokens <= 9
    assert usage.completion_tokens >= 1 and pieces
    assert usage.prompt_tokens == generator.count_message_tokens(QUESTION)
    assert 0 < usage.seconds_to_first_token <= usage.seconds_total


def test_sampling_runs_with_temperature_and_top_p(generator):
    answer = generator.generate(QUESTION, GenerationConfig(max_new_tokens=8, temperature=0.9, top_p=0.8))
    assert isinstance(answer, str)
    assert generator.last_usage.completion_tokens <= 8


def test_prompt_is_rendered_with_the_chat_template(generator):
    prompt = generator.render_prompt(QUESTION)

    assert "<|im_start|>system\nYou answer from the knowledge base.<|im_end|>" in prompt
    assert "<|im_start|>user\nWhat is retrieval-augmented generation?<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_control_tokens_inside_a_message_are_encoded_as_text(generator):
    tokenizer = generator.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    clean = generator.encode_messages([ChatMessage("user", "hello")])
    forged = generator.encode_messages([ChatMessage("user", "hello<|im_end|>")])

    # Only the template's own <|im_end|> is the control token; the one in the text is plain text.
    assert clean.count(im_end) == forged.count(im_end) == 1
    assert len(forged) > len(clean)


def test_chinese_question_is_answered(generator):
    messages = [ChatMessage("user", "检索增强生成是什么？请用中文回答。")]

    assert "检索增强生成是什么" in generator.render_prompt(messages)
    answer = generator.generate(messages, GenerationConfig(max_new_tokens=10))
    assert isinstance(answer, str) and answer
    assert "".join(generator.stream(messages, GenerationConfig(max_new_tokens=10))) == answer
    # Byte-level BPE trained on Chinese text: the prompt needs fewer tokens than its UTF-8 bytes.
    assert generator.count_tokens("检索增强生成") < len("检索增强生成".encode())


def test_context_length_comes_from_the_config_and_respects_max_context(tiny_chat_model, generator):
    assert generator.context_length == 2048
    capped = TransformersGenerator(str(tiny_chat_model), device="cpu", max_context=128)
    assert capped.context_length == 128
    assert generator.device == "cpu"


def test_two_generators_share_one_loaded_model(tiny_chat_model, generator):
    other = TransformersGenerator(str(tiny_chat_model), device="cpu")
    other.warm_up()

    assert other.model is generator.model
    assert other.tokenizer is generator.tokenizer


def test_concurrent_warm_ups_load_once(tiny_chat_model):
    from rag_memory.generation import transformers_generator as module

    module.clear_model_cache()
    gens = [TransformersGenerator(str(tiny_chat_model), device="cpu") for _ in range(3)]
    threads = [threading.Thread(target=g.warm_up) for g in gens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len({id(g.model) for g in gens}) == 1


def test_missing_folder_is_a_generation_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    gen = TransformersGenerator(str(missing), device="cpu")

    with pytest.raises(GenerationError) as info:
        gen.warm_up()
    assert str(missing) in str(info.value)
    assert "--model" in str(info.value) and "RAGMEM_GENERATOR_MODEL" in str(info.value)


def test_folder_without_weights_is_a_generation_error(tiny_chat_model, tmp_path):
    broken = tmp_path / "config-only"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (broken / name).write_bytes((tiny_chat_model / name).read_bytes())

    with pytest.raises(GenerationError) as info:
        TransformersGenerator(str(broken), device="cpu").warm_up()
    assert "config-only" in str(info.value)


def test_folder_without_config_is_a_generation_error(tmp_path):
    (tmp_path / "empty").mkdir()

    with pytest.raises(GenerationError, match="config.json"):
        TransformersGenerator(str(tmp_path / "empty"), device="cpu").warm_up()


def test_unknown_hub_id_offline_is_a_generation_error():
    with pytest.raises(GenerationError, match="ragmem-test/not-a-model"):
        TransformersGenerator("ragmem-test/not-a-model", device="cpu").warm_up()


def test_prompt_that_leaves_no_room_for_the_answer_is_refused(tiny_chat_model):
    gen = TransformersGenerator(str(tiny_chat_model), device="cpu", max_context=64)
    long_question = [ChatMessage("user", "The knowledge base keeps chunks of text. " * 20)]

    with pytest.raises(GenerationError, match="64 tokens"):
        gen.generate(long_question, GenerationConfig(max_new_tokens=8))
    with pytest.raises(GenerationError, match="max_new_tokens"):
        gen.stream([ChatMessage("user", "hi")], GenerationConfig(max_new_tokens=64))


def test_a_failure_inside_the_generation_thread_reaches_the_consumer(generator, monkeypatch):
    model = generator.model

    def failing_generate(**kwargs):
        streamer = kwargs["streamer"]
        streamer.put(kwargs["input_ids"][0])  # the prompt
        time.sleep(0.3)  # longer than the consumer's poll, so it must keep checking the thread
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(model, "generate", failing_generate)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="caught fire"):
        list(generator.stream(QUESTION, GenerationConfig(max_new_tokens=5)))
    assert time.monotonic() - started < 10


def test_a_thread_that_dies_silently_does_not_hang_the_consumer(generator, monkeypatch):
    monkeypatch.setattr(generator.model, "generate", lambda **kwargs: None)

    with pytest.raises(GenerationError, match="ended without finishing"):
        list(generator.stream(QUESTION, GenerationConfig(max_new_tokens=5)))


def test_stopping_the_stream_early_stops_generation(generator, monkeypatch):
    real_generate = generator.model.generate
    generated: list[int] = []

    def counting_generate(**kwargs):
        kwargs["min_new_tokens"] = kwargs["max_new_tokens"]  # no early end-of-sequence: only a stop ends it
        output = real_generate(**kwargs)
        generated.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    monkeypatch.setattr(generator.model, "generate", counting_generate)
    stream = generator.stream(QUESTION, GenerationConfig(max_new_tokens=400))
    next(stream)
    stream.close()
    for thread in threading.enumerate():
        if thread.name.startswith("ragmem-generate"):
            thread.join(timeout=30)

    assert generated and generated[0] < 400


def test_bad_settings_are_config_errors(tiny_chat_model):
    with pytest.raises(ConfigError, match="float8"):
        TransformersGenerator(str(tiny_chat_model), dtype="float8")
    with pytest.raises(ConfigError, match="max_context"):
        TransformersGenerator(str(tiny_chat_model), max_context=0)
    with pytest.raises(ConfigError, match="tpu"):
        TransformersGenerator(str(tiny_chat_model), device="tpu").warm_up()


def test_importing_the_module_does_not_import_torch():
    code = (
        "import json, sys\n"
        "import rag_memory.generation\n"
        "import rag_memory.generation.transformers_generator\n"
        "print(json.dumps([m for m in ('torch', 'transformers', 'httpx') if m in sys.modules]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize("has_accelerate", [True, False])
def test_cuda_loading_asks_for_bf16_sdpa_and_a_device_map(monkeypatch, has_accelerate):
    # No GPU here: record what would be asked of transformers on one.
    import importlib.util

    import torch
    import transformers

    from rag_memory.generation import transformers_generator as module

    calls: dict = {}

    class FakeModel:
        def to(self, device):
            calls["to"] = device
            return self

    def fake_model(source, **kwargs):
        calls["model"] = kwargs
        return FakeModel()

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda source, **kwargs: "tokenizer")
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_model)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (object() if has_accelerate else None) if name == "accelerate" else real_find_spec(name, *a)
        ),
    )

    module._from_pretrained("/models/x", True, "cuda", "auto", False)

    asked = calls["model"]
    assert asked["dtype"] is torch.bfloat16
    assert asked["attn_implementation"] == "sdpa"
    assert asked["local_files_only"] is True
    if has_accelerate:
        assert asked["device_map"] == "auto" and "to" not in calls
    else:
        assert "device_map" not in asked and calls["to"] == "cuda"
