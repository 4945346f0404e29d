#!/usr/bin/env python3
"""Train the LLM pipeline's tokenizer, a byte-level BPE, on the shipped corpus.txt, and save it
in Hugging Face's format.

    python model_repository/tokenizer/build_tokenizer.py [FOLDER] [--vocab 1024]

FOLDER (default: this file's folder) receives tokenizer.json (the `tokenizers` library's file)
and tokenizer_config.json, so that `transformers.AutoTokenizer.from_pretrained(FOLDER)` loads it
as GPT-2's tokenizers load, and genai-perf or AIPerf can be given FOLDER as their --tokenizer.

GPT-2's scheme: the text is split with GPT-2's pre-tokenization pattern, each piece is taken as
UTF-8 bytes, each byte a token of its own (256 of them), and the trainer merges the most frequent
pair until the vocabulary has --vocab tokens, the special token <|endoftext|> (id 0) included.
Any text encodes, and decoding gives it back byte for byte. Nothing is downloaded; the corpus
(about 13 KB of English prose written for this repository) and the trainer's settings fix the
result: two runs give the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile

import tokenizers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus.txt")
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
DEFAULT_VOCAB = 1024
END_OF_TEXT = "<|endoftext|>"
MIN_FREQUENCY = 2  # a pair seen once is not merged
CONTEXT_TOKENS = 1024  # tiny-lm's positions (prompt + generated tokens), AutoTokenizer's model_max_length
FINGERPRINT_KEY = "loadgen_fingerprint"  # in tokenizer_config.json; transformers keeps unknown keys as they are


def fingerprint(vocab: int = DEFAULT_VOCAB) -> str:
    """This builder's source, the corpus, the vocabulary size and the tokenizers version: a saved
    tokenizer whose fingerprint differs is stale."""
    digest = hashlib.sha256()
    for path in (os.path.abspath(__file__), CORPUS):
        with open(path, "rb") as f:
            digest.update(f.read())
    digest.update(f"|vocab={vocab}|tokenizers={tokenizers.__version__}".encode())
    return digest.hexdigest()


def train(vocab: int = DEFAULT_VOCAB) -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        min_frequency=MIN_FREQUENCY,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([CORPUS], trainer)
    if tokenizer.get_vocab_size() != vocab:
        raise ValueError(f"the corpus supports {tokenizer.get_vocab_size()} tokens, fewer than --vocab {vocab}")
    return tokenizer


def auto_tokenizer_config(vocab: int) -> dict:
    """tokenizer_config.json: what AutoTokenizer needs to load tokenizer.json on its own."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": END_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,  # decoding must give the text back unchanged
        "model_max_length": CONTEXT_TOKENS,
        FINGERPRINT_KEY: fingerprint(vocab),
    }


def _write_atomically(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tokenizer-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def is_stale(folder: str, vocab: int = DEFAULT_VOCAB) -> bool:
    """Missing, or saved by this builder from another source or other arguments. A tokenizer.json
    that this builder did not save (no fingerprint) is not stale: it is used as it is."""
    if not os.path.exists(os.path.join(folder, TOKENIZER_FILE)):
        return True
    try:
        with open(os.path.join(folder, CONFIG_FILE), encoding="utf-8") as f:
            saved = json.load(f).get(FINGERPRINT_KEY)
    except (OSError, ValueError):
        return False
    return saved is not None and saved != fingerprint(vocab)


def write(folder: str, vocab: int = DEFAULT_VOCAB) -> Tokenizer:
    """Train and save tokenizer.json and tokenizer_config.json in folder, each atomically: the
    tokenizer and the detokenizer may build at once, and write the same bytes. The config, which
    holds the fingerprint, goes last, so that a stale tokenizer.json never reads as fresh."""
    tokenizer = train(vocab)
    os.makedirs(folder, exist_ok=True)
    _write_atomically(os.path.join(folder, TOKENIZER_FILE), tokenizer.to_str(pretty=True))
    _write_atomically(os.path.join(folder, CONFIG_FILE), json.dumps(auto_tokenizer_config(vocab), indent=2) + "\n")
    return tokenizer


def load(folder: str, vocab: int = DEFAULT_VOCAB) -> Tokenizer:
    """The tokenizer in folder, built first when it is missing or stale (in memory only, when the
    folder is read-only)."""
    if not is_stale(folder, vocab):
        return Tokenizer.from_file(os.path.join(folder, TOKENIZER_FILE))
    try:
        return write(folder, vocab)
    except OSError:
        return train(vocab)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", default=HERE, help="where to save the tokenizer (default: beside this file)")
    parser.add_argument("--vocab", type=int, default=DEFAULT_VOCAB, help=f"vocabulary size, tiny-lm's (default {DEFAULT_VOCAB})")
    args = parser.parse_args(argv)
    try:
        tokenizer = write(args.folder, args.vocab)
    except ValueError as exc:
        parser.error(str(exc))
    print(f"wrote {os.path.join(args.folder, TOKENIZER_FILE)} and {CONFIG_FILE}: {tokenizer.get_vocab_size()} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
