"""Generators: chat messages in, an answer (whole or streamed) out.

``TransformersGenerator`` runs a local Hugging Face model (GPU when there is one);
``OpenAICompatibleGenerator`` talks to an inference server such as vLLM. Importing this
package imports neither torch, transformers nor httpx; they load with the first model or request.
"""

from rag_memory.generation.base import ChatMessage, GenerationConfig, Generator, Usage
from rag_memory.generation.openai_compatible import OpenAICompatibleGenerator, approximate_tokens
from rag_memory.generation.transformers_generator import TransformersGenerator

__all__ = [
    "ChatMessage",
    "GenerationConfig",
    "Generator",
    "OpenAICompatibleGenerator",
    "TransformersGenerator",
    "Usage",
    "approximate_tokens",
]
