"""Build a tiny random-weight chat model offline, so tests run the real loading and generate code.

No weights exist on the test machines and the hub is unreachable, so the model is made here:
a byte-level BPE tokenizer trained on a small English and Chinese corpus, a ChatML chat
template, and a two-layer Qwen2 with random (seeded) weights. It builds in a couple of seconds.
"""

from __future__ import annotations

from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "Retrieval-augmented generation answers a question from documents it retrieves first.",
    "The knowledge base keeps chunks of text with their embeddings in a Chroma collection.",
    "Conversation memory stores every turn; older turns are recalled by similarity.",
    "The quick brown fox jumps over the lazy dog. A local model runs on the GPU or the CPU.",
    "system user assistant: What is the capital of France? Paris is the capital of France.",
    "Hello, how are you today? I am fine, thank you. Please cite the sources [1] and [2].",
    "检索增强生成先检索相关文档，再根据文档回答问题。",
    "知识库把文本分块，并把向量保存在集合中。对话记忆保存每一轮对话。",
    "你好，今天天气怎么样？北京是中国的首都。请引用来源。",
    "长期记忆按相似度召回旧的对话和用户的偏好。模型在显卡或处理器上运行。",
    "0123456789 + - * / = ( ) [ ] { } < > | ! ? . , ; : ' \" # @ % & _ ~",
]


def _train_tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>"],
        model_max_length=2048,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_chat_model(
    path: Path, *, vocab_size: int = 1000, seed: int = 0, shape: dict | None = None, dtype=None
) -> Path:
    """Save a tiny random-weight Qwen2 chat model and its tokenizer under ``path``.

    Args:
        path: The folder to write; created if missing.
        vocab_size: Target size of the trained BPE vocabulary (the corpus may give fewer).
        seed: Torch seed for the random weights, so every build is the same model.
        shape: Qwen2Config fields to override (e.g. a real model's hidden size and layers, for
            speed measurements: speed does not depend on the weights' values).
        dtype: torch dtype to save the weights in (default float32).

    Returns:
        ``path``, ready for ``AutoTokenizer``/``AutoModelForCausalLM.from_pretrained``.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(vocab_size)
    fields = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    fields.update(shape or {})
    fields["vocab_size"] = max(fields["vocab_size"], len(tokenizer))
    # Derived fields (per-layer types) are computed from these, so they go in at construction.
    config = Qwen2Config(**fields)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    if config.vocab_size > len(tokenizer):
        # A real model's vocabulary size keeps the output layer's cost real, but ids the
        # trained tokenizer cannot decode would stream as nothing: zero their output rows, so
        # greedy decoding picks a decodable token (random logits of real rows are above 0).
        with torch.no_grad():
            model.get_output_embeddings().weight[len(tokenizer) :] = 0
    if dtype is not None:
        model = model.to(dtype)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
