"""Prompt texts, in English and Chinese (the language of the text decides which).

The block prompt follows the QRRanker paper's block-summary instruction: an expert fiction
editor writes a 50–100-word narrative summary of "Part k / K" in the third person and past tense,
keeping names, relationships, plot-driving dialogue and places, ignoring boilerplate, with no meta
commentary. The text comes first and the instructions last: small models follow instructions that are
closest to the answer better. The event prompt follows the paper's event-centric instruction.

Bump ``PROMPT_VERSION`` whenever a prompt changes, so cached answers to old prompts are not reused.
"""
from __future__ import annotations

from typing import Sequence

PROMPT_VERSION = 1

# ----------------------------------------------------------------------------------------------
# Block summaries (level 0 of a narrative)
# ----------------------------------------------------------------------------------------------

_BLOCK_EN = """You are an expert fiction editor and continuity supervisor. Below is Part {k} / {total} of a book: about {n} consecutive passages.

=== Part {k} / {total} ===
{text}
=== End of Part {k} / {total} ===

Write a Detailed Narrative Summary of Part {k} / {total}:
- tell it as a coherent story in the third person and the past tense, not as a list of events;
- keep the characters' names and relationships, plot-driving dialogue, the locations and changes of setting;
- ignore copyright notices, Project Gutenberg headers and licences, page numbers, tables of contents and fragments cut off mid-sentence;
- no meta commentary: do not mention "this part", "the text", "the passage" or "the summary";
- 50 to 100 words.

Output only the summary."""

_BLOCK_ZH = """你是一位资深的小说编辑和情节连贯性审校。下面是一本书的第 {k} / {total} 部分，由大约 {n} 个连续段落组成。

=== 第 {k} / {total} 部分 ===
{text}
=== 第 {k} / {total} 部分结束 ===

请为第 {k} / {total} 部分写一段详细的叙事摘要：
- 用第三人称讲述已经发生的事情，写成连贯的故事，不要逐条罗列事件；
- 保留人物的姓名和人物关系、推动情节的对话、地点和场景的变化；
- 忽略版权声明、古登堡计划（Project Gutenberg）的页眉和许可说明、页码、目录以及被截断的残句；
- 不要写任何评论或说明，不要出现"本部分""这段文字""本摘要"之类的字眼；
- 用中文写，长度约 100 到 200 字。

只输出摘要本身。"""

# ----------------------------------------------------------------------------------------------
# Higher levels: a summary of consecutive summaries
# ----------------------------------------------------------------------------------------------

_GROUP_EN = """You are an expert fiction editor. Below are {n} summaries of consecutive stretches of {what}, in order; together they cover {span}.

{text}

Combine them into one Narrative Summary of {scope}:
- tell it as a coherent story in the third person and the past tense;
- keep the main characters' names and relationships, the key events in their order, and the places;
- no meta commentary: do not mention "the parts", "the summaries" or "the text";
- 80 to 150 words.

Output only the summary."""

_GROUP_ZH = """你是一位资深的小说编辑。下面按顺序给出{what}中 {n} 段连续内容的摘要，合起来涵盖{span}。

{text}

请把它们合并成一段关于{scope}的叙事摘要：
- 用第三人称讲述已经发生的事情，写成连贯的故事；
- 保留主要人物的姓名和人物关系、按先后顺序的关键事件以及地点；
- 不要写任何评论或说明，不要出现"这些部分""这些摘要""这段文字"之类的字眼；
- 用中文写，长度约 150 到 300 字。

只输出摘要本身。"""

# ----------------------------------------------------------------------------------------------
# Event summaries of a conversation session (transcripts)
# ----------------------------------------------------------------------------------------------

_EVENTS_EN = """You read conversation logs and record the events in people's lives. Below is session {session}{when} of a conversation, one utterance per numbered line.

{lines}

Extract the 1 to 3 most important events of this session. For each event give:
- "summary": one or two sentences in the third person saying who did or planned what (and when, if it is said);
- "class": "ANCHOR" for a major, first-time or rare life milestone with lasting impact (such as adopting a child, changing career, moving country), or "EPHEMERAL" for plans, routine activities, casual updates and recalled past events;
- "related_line_indices": the numbers of the 2 to 4 lines that are the evidence for the event.

Answer with JSON only, in exactly this form:
{{"events": [{{"summary": "...", "class": "ANCHOR", "related_line_indices": [1, 2]}}]}}"""

_EVENTS_ZH = """你负责阅读对话记录并记下人们生活中的事件。下面是一段对话的第 {session} 次会话{when}，每行一句话，行首是编号。

{lines}

请找出这次会话中最重要的 1 到 3 个事件。每个事件给出：
- "summary"：用中文、第三人称写一两句话，说明谁做了或打算做什么（如提到时间也写上）；
- "class"：重大的、第一次或少有的、影响长远的人生节点（如领养孩子、转行、移居他国）写 "ANCHOR"；计划、日常活动、近况和回忆中的往事写 "EPHEMERAL"；
- "related_line_indices"：作为该事件依据的 2 到 4 行的编号。

只输出 JSON，格式必须完全如下：
{{"events": [{{"summary": "...", "class": "ANCHOR", "related_line_indices": [1, 2]}}]}}"""

# Appended on the one retry after unusable output (a deterministic model would otherwise repeat it).
_RETRY_SUMMARY_EN = "\n\nYour previous answer could not be used ({reason}). Write the summary again as plain English prose, in complete sentences, without repeating yourself."
_RETRY_SUMMARY_ZH = "\n\n你上一次的回答无法使用（{reason}）。请重新用通顺的中文写出摘要，句子完整，不要重复。"
_RETRY_EVENTS_EN = "\n\nYour previous answer was not valid ({reason}). Answer again with the JSON object only, nothing else."
_RETRY_EVENTS_ZH = "\n\n你上一次的回答不符合要求（{reason}）。请只输出 JSON 对象，不要输出其他内容。"


def block_prompt(text: str, k: int, total: int, n_chunks: int, language: str) -> str:
    template = _BLOCK_ZH if language == "zh" else _BLOCK_EN
    return template.format(k=k, total=total, n=n_chunks, text=text)


def group_prompt(summaries: Sequence[str], first: int, last: int, total: int, is_root: bool,
                 language: str, transcript: bool = False) -> str:
    """``first``/``last``/``total`` number the level-0 parts (blocks or sessions) the group spans."""
    if language == "zh":
        what = "一段对话" if transcript else "一本书"
        unit = "次会话" if transcript else "部分"
        span = f"第 {first}–{last} {unit}，共 {total} {unit}"
        scope = ("整段对话" if transcript else "整本书") if is_root else "这一段内容"
        text = "\n\n".join(f"【{i}】{s}" for i, s in enumerate(summaries, 1))
        return _GROUP_ZH.format(n=len(summaries), what=what, span=span, scope=scope, text=text)
    what = "a conversation" if transcript else "a book"
    unit = "sessions" if transcript else "parts"
    span = f"{unit} {first}–{last} of {total}"
    scope = ("the whole conversation" if transcript else "the whole book") if is_root else "this stretch of the " + (
        "conversation" if transcript else "book")
    text = "\n\n".join(f"[{i}] {s}" for i, s in enumerate(summaries, 1))
    return _GROUP_EN.format(n=len(summaries), what=what, span=span, scope=scope, text=text)


def events_prompt(lines: Sequence[str], session: object, when: str | None, language: str) -> str:
    numbered = "\n".join(f"{i}. {line}" for i, line in enumerate(lines, 1))
    if language == "zh":
        return _EVENTS_ZH.format(session=session, when=f"（{when}）" if when else "", lines=numbered)
    return _EVENTS_EN.format(session=session, when=f" ({when})" if when else "", lines=numbered)


def summary_retry(prompt: str, reason: str, language: str) -> str:
    return prompt + (_RETRY_SUMMARY_ZH if language == "zh" else _RETRY_SUMMARY_EN).format(reason=reason)


def events_retry(prompt: str, reason: str, language: str) -> str:
    return prompt + (_RETRY_EVENTS_ZH if language == "zh" else _RETRY_EVENTS_EN).format(reason=reason)
