"""The generator interface: one small protocol that the local (llama.cpp) and remote (OpenAI-compatible
HTTP) generators implement, so the answerer and the summarizer do not care which one runs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol, Sequence, Union

from ..errors import GeneratorError

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}
PromptOrMessages = Union[str, Sequence[Message]]


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: Optional[str]  # "stop" | "length" | ... as the backend reports it


class Generator(Protocol):
    model_id: str  # names the model in cache keys and reports ("llama.cpp:qwen2.5-coder-0.5b.gguf")

    def complete(self, prompt_or_messages: PromptOrMessages, max_tokens: int, temperature: float = 0.0,
                 stop: Optional[Sequence[str]] = None) -> Completion: ...

    def stream(self, prompt_or_messages: PromptOrMessages, max_tokens: int, temperature: float = 0.0,
               stop: Optional[Sequence[str]] = None) -> Iterator[str]: ...

    def count_tokens(self, text: str) -> int: ...


def as_messages(prompt_or_messages: PromptOrMessages) -> list[Message]:
    """A plain prompt becomes one user message; a message list is checked and copied."""
    if isinstance(prompt_or_messages, str):
        return [{"role": "user", "content": prompt_or_messages}]
    messages = []
    for i, m in enumerate(prompt_or_messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise GeneratorError(f"message {i} must be a dict with string 'role' and 'content'")
        messages.append({"role": m["role"], "content": m["content"]})
    if not messages:
        raise GeneratorError("no messages to send to the generator")
    return messages


def text_completer(generator: Generator, temperature: float = 0.0) -> Callable[[str, int], str]:
    """``complete(prompt, max_tokens) -> str`` over a generator: the shape the summarizer takes."""

    def complete(prompt: str, max_tokens: int) -> str:
        return generator.complete(prompt, max_tokens=max_tokens, temperature=temperature).text

    return complete
