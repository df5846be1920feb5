"""The GPU speed paths, exercised on the CPU with the tiny model: a static KV cache, and
several prompts in one batched ``generate``."""

from __future__ import annotations

from rag_memory.generation import ChatMessage, GenerationConfig, TransformersGenerator

PROMPTS = [
    [ChatMessage("user", "What is retrieval-augmented generation?")],
    [ChatMessage("system", "Answer briefly."), ChatMessage("user", "长城有多长？请用一句话回答。")],
    [ChatMessage("user", "Hi")],
]


def test_a_static_kv_cache_gives_the_same_greedy_answer(tiny_chat_model):
    config = GenerationConfig(max_new_tokens=12)
    dynamic = TransformersGenerator(str(tiny_chat_model), device="cpu")
    static = TransformersGenerator(str(tiny_chat_model), device="cpu", static_cache=True)
    for prompt in PROMPTS[:2]:
        assert static.generate(prompt, config) == dynamic.generate(prompt, config)
        assert "".join(static.stream(prompt, config)) == dynamic.generate(prompt, config)
    kwargs = static._generate_kwargs([1, 2, 3], config, None)
    assert kwargs["cache_implementation"] == "static"


def test_a_batch_of_prompts_gets_the_answers_each_would_get_alone(tiny_chat_model):
    gen = TransformersGenerator(str(tiny_chat_model), device="cpu", dtype="float32")
    config = GenerationConfig(max_new_tokens=10)
    alone = [gen.generate(p, config) for p in PROMPTS]
    together = gen.generate_batch(PROMPTS, config)
    assert together == alone
    usage = gen.last_usage
    assert usage.prompt_tokens == sum(gen.count_message_tokens(p) for p in PROMPTS)
    assert 1 <= usage.completion_tokens <= 3 * 10
    assert gen.generate_batch([], config) == []
