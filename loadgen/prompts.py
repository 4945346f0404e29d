"""Prompts for text models: read from a prompts file (`.txt`, one a line; `.jsonl`, one object a
line, as genai-perf's and AIPerf's input files), or made up to a number of tokens (--prompt-tokens).

Made-up prompts are words drawn from WORDS with a seeded generator, so every run sends the same
ones. Each word of WORDS (after a space), and each of FIRST_WORDS (at the start of the text), is
one token of the shipped tokenizer (model_repository/tokenizer, as built): N words are N tokens.
With a tokenizer given, words are counted with it, and the prompts checked against it (trimmed or
grown when it counts a text otherwise than word by word), so a tokenizer.json built with other
sizes, or the user's own, still gets its N tokens.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loadgen.errors import UsageError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

PROMPT_SUFFIXES = (".txt", ".jsonl")
# The keys of a .jsonl line that hold its prompt: genai-perf's and AIPerf's (single_turn) input
# files use "text"; AIPerf's trace files and Triton's generate extension "text_input"; many others "prompt".
PROMPT_KEYS = ("text", "text_input", "prompt")
PROMPT_COUNT = 100  # distinct made-up prompts, sent round robin (genai-perf's default dataset size)
MAX_PROMPT_TOKENS = 131_072  # the longest context of common LLMs (128k); longer is a typo
ADJUST_ROUNDS = 16  # a tokenizer whose words interact across spaces: last words tried to make the count exact

# Common English words that the shipped tokenizer makes one token each, after a space.
WORDS = tuple("""
    a about add adding after again all along an and answer any anyone are arrive as at away back baker be because
    been before begins boat books bread but by called can cannot care city clear cold come count cut day days did do
    does down each end enough error even every everything far fast few fine first fits five fold follows for four
    from full go good grows half hand happen has have hide high hill hold hour how hundred if in into is it its keep
    kind know lake largest last learn leaves lemon like line list little long low made makes man many map mark market
    matter measure middle minutes model more morning most mountain mountains must new night no nobody not nothing now
    number of old on once one onion only or order other out over own pace part parts past path people piece play pot
    prime prompt purpose queue quickly rare reach read region results river road roads run salt same send server she
    shows single slow slowly small so some songs square stars start starts step still stones story stream sum sun
    table takes tell ten text than that the their them then there these they thick thin thousand three time times to
    together token tokens too tools town turn twenty two under until up use used valley value very wait waiting walk
    was water way we were what when where which who whole will with without word words work works written years you
    young
""".split())
# Those of WORDS that are one token of the shipped tokenizer without a space too: a prompt's first word.
FIRST_WORDS = ("a", "all", "an", "and", "are", "as", "at", "end", "four", "if", "in", "is", "it", "its", "not", "now",
               "old", "on", "one", "or", "out", "own", "read", "to", "very", "way")  # fmt: skip


def is_prompts_file(input_data: str) -> bool:
    """Whether --input-data names a prompts file (by its suffix) rather than perf_analyzer's JSON."""
    return Path(input_data).suffix.lower() in PROMPT_SUFFIXES


def read_prompts(path: Path) -> list[str]:
    """The prompts of a `.txt` file (each line one, blank lines skipped, line endings dropped) or a
    `.jsonl` file (each line an object whose "text", "text_input" or "prompt" is the prompt; blank
    lines skipped)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read --input-data {path}: {exc.strerror}") from None
    jsonl = path.suffix.lower() == ".jsonl"
    prompts = []
    # Split on newlines alone: str.splitlines would also split a prompt at form feeds and U+2028.
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"--input-data {path}, line {number}: not UTF-8 text: fix the line") from None
        if not text.strip():
            continue
        prompts.append(_jsonl_prompt(text, f"--input-data {path}, line {number}") if jsonl else text)
    if not prompts:
        raise UsageError(f"--input-data {path} holds no prompts: give one a line" + (", as {\"text\": \"...\"}" if jsonl else ""))
    return prompts


def _jsonl_prompt(line: str, where: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{where}: not valid JSON ({exc.msg}): give one object a line, e.g. {{\"text\": \"...\"}}") from None
    keys = [key for key in PROMPT_KEYS if isinstance(record, dict) and key in record]
    if not keys:
        raise UsageError(f"{where}: no prompt: give an object with \"text\" (or \"text_input\" or \"prompt\"), e.g. {{\"text\": \"...\"}}")
    if len(keys) > 1:
        raise UsageError(f"{where}: both {keys[0]!r} and {keys[1]!r}: give the prompt under one key")
    prompt = record[keys[0]]
    if not isinstance(prompt, str):
        raise UsageError(f"{where}: {keys[0]!r} is {json.dumps(prompt)[:40]}, not a string: give the prompt as text")
    return prompt


def repository_tokenizer(repository: Path | None) -> Tokenizer | None:
    """The tokenizer the shipped `tokenizer` model uses, `REPOSITORY/tokenizer/tokenizer.json`
    (written at its first load); None without a repository, or before it was written."""
    path = None if repository is None else Path(repository) / "tokenizer" / "tokenizer.json"
    if path is None or not path.is_file():
        return None
    from tokenizers import Tokenizer  # only for --prompt-tokens

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for a file it cannot parse
        raise UsageError(f"cannot read the tokenizer {path} ({exc}): rebuild it (model_repository/README.md) or remove it") from None


def synthetic_prompts(tokens: int, seed: int, tokenizer: Tokenizer | None = None, count: int = PROMPT_COUNT) -> list[str]:
    """`count` prompts of `tokens` tokens each: exactly, counted with `tokenizer`, or with the
    shipped tokenizer when None (each word one token); the same for the same seed."""
    rng = np.random.default_rng(seed)
    first_cost = _costs(tokenizer, FIRST_WORDS, "")
    cost = _costs(tokenizer, WORDS, " ")
    prompts = [_prompt(tokens, rng, first_cost, cost) for _ in range(count)]
    # A text's count is its words' sum for a tokenizer that splits at spaces first (the shipped one):
    # one prompt tells, as counting every long prompt would take as long as making them.
    if tokenizer is not None and _counted(tokenizer, prompts[0]) != tokens:
        prompts = [_to_count(prompt.split(" "), tokens, tokenizer, rng) for prompt in prompts]
    return prompts


def _counted(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def _costs(tokenizer: Tokenizer | None, words: tuple[str, ...], before: str) -> np.ndarray:
    """Each word's tokens, with `before` in front of it."""
    if tokenizer is None:
        return np.ones(len(words), dtype=np.int64)
    return np.array([len(tokenizer.encode(before + word, add_special_tokens=False).ids) for word in words], dtype=np.int64)


def _prompt(tokens: int, rng: np.random.Generator, first_cost: np.ndarray, cost: np.ndarray) -> str:
    # The first word: one that fits, the cheapest when none does.
    fitting = np.flatnonzero(first_cost <= tokens)
    first = int(rng.choice(fitting)) if fitting.size else int(np.argmin(first_cost))
    remaining = tokens - int(first_cost[first])
    # Words drawn at once (each costs at least 1, so `remaining` draws are enough), kept while they fit...
    drawn = rng.integers(0, len(WORDS), size=max(remaining, 0))
    kept = drawn[np.cumsum(cost[drawn]) <= remaining]
    words = [FIRST_WORDS[first], *(WORDS[i] for i in kept)]
    remaining -= int(cost[kept].sum())
    # ...then the rest filled with words that fit it.
    while remaining > 0 and (fitting := np.flatnonzero(cost <= remaining)).size:
        pick = int(rng.choice(fitting))
        words.append(WORDS[pick])
        remaining -= int(cost[pick])
    return " ".join(words)


def _to_count(words: list[str], tokens: int, tokenizer: Tokenizer, rng: np.random.Generator) -> str:
    """For a tokenizer whose count of a text is not its words' sum: the longest start of `words`
    (with as many again drawn after them) within `tokens`, then a last word that makes it exact
    when one of ADJUST_ROUNDS tried does."""
    words = words + [WORDS[i] for i in rng.integers(0, len(WORDS), size=len(words))]
    low, high = 1, len(words)  # bisect: a longer start never has fewer tokens
    while low < high:
        middle = (low + high + 1) // 2
        if _counted(tokenizer, " ".join(words[:middle])) <= tokens:
            low = middle
        else:
            high = middle - 1
    text = " ".join(words[:low])
    if _counted(tokenizer, text) < tokens:
        for i in rng.permutation(len(WORDS))[:ADJUST_ROUNDS]:
            if _counted(tokenizer, f"{text} {WORDS[i]}") == tokens:
                return f"{text} {WORDS[i]}"
    return text
