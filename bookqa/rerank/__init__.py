"""Reranking: the shared contract (base), the QR attention reranker and its head sets."""
from .base import RankedResult, RankedResults, Reranker
from .heads import HeadSet, builtin_heads, load_heads, resolve_heads, save_heads
from .prompt import BuiltPrompt, PromptLayout, build_prompt
from .qr import QRRanker

__all__ = ["Reranker", "RankedResult", "RankedResults", "QRRanker", "HeadSet", "load_heads", "save_heads",
           "resolve_heads", "builtin_heads", "PromptLayout", "BuiltPrompt", "build_prompt"]
