"""Tiny random-weight checkpoints built at test time (the hub cannot be reached from tests).

The XLM-RoBERTa ones have bge-m3's layout (tokenizer.json + config.json + model.safetensors, XLM-R special
tokens and position offset) and the Qwen3 one Qwen3-Reranker's (byte-level BPE with Qwen's pre-tokenizer
and chat tokens), so encoders and rerankers load them through exactly the code path of the real models.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from pathlib import Path

import torch
from tokenizers import AddedToken, pre_tokenizers
from transformers import (
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
    XLMRobertaTokenizer,
)

MAX_TOKENS = 128  # position embeddings = MAX_TOKENS + 2, as XLM-R numbers positions from pad_token_id + 1
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # XLM-R ids 0..3; <unk> must be id 3

CORPUS = [
    "Градиентный спуск — это метод оптимизации функции потерь.",
    "Gradient descent is a method for optimising a loss function.",
    "Нейронная сеть состоит из слоёв нейронов.",
    "A neural network is made of layers of neurons.",
    "Домашнее задание нужно сдать до пятницы.",
    "The homework is due on Friday.",
    "Лекция начинается в десять утра в большой аудитории.",
    "The lecture starts at ten in the morning in the main hall.",
    "Переобучение возникает, когда модель запоминает данные.",
    "Overfitting happens when a model memorises the data.",
    "Регуляризация помогает модели лучше обобщать.",
    "Regularisation helps a model generalise better.",
    "Скорость обучения задаёт размер шага.",
    "The learning rate sets the step size.",
    "Матрица весов умножается на вектор входов.",
    "The weight matrix is multiplied by the input vector.",
    "Экзамен будет письменным и продлится два часа.",
    "The exam is written and lasts two hours.",
    "Векторный поиск находит похожие документы.",
    "Vector search finds similar documents.",
    "Кошка спит на тёплом подоконнике.",
    "The cat sleeps on the warm windowsill.",
    "Привет, мир! Как дела?",
    "Hello, world! How are you?",
    "Токенизатор разбивает текст на части слов.",
    "The tokenizer splits text into pieces of words.",
    "Ответы на вопросы ищутся в материалах курса.",
    "Answers to questions are searched in the course materials.",
    "Семинар перенесли на следующую неделю.",
    "The seminar was moved to next week.",
]


def unigram_vocab() -> list[tuple[str, float]]:
    """SentencePiece-style pieces of CORPUS (`▁word` and single characters) scored by log frequency.

    Counted rather than trained: tokenizers' UnigramTrainer orders rare pieces differently on every run,
    which would change token ids between builds.
    """
    counts: Counter[str] = Counter()
    for word in " ".join(CORPUS).split():
        counts["▁"] += 1
        counts.update(word)
        core = word.strip(string.punctuation + "—")
        if core:
            counts["▁" + core] += 1
    total = sum(counts.values())
    pieces = sorted(
        ((piece, math.log(n / total)) for piece, n in counts.items()), key=lambda p: (-p[1], p[0])
    )
    return [(token, 0.0) for token in SPECIAL_TOKENS] + pieces


def build_tiny_xlmr(path: Path, with_classification_head: bool = False) -> Path:
    """Save a tokenizer and a 2-layer, 32-wide XLM-R model to `path`; every build writes identical files.

    With `with_classification_head` the model is an `XLMRobertaForSequenceClassification` with one logit,
    the shape of cross-encoder rerankers such as bge-reranker-v2-m3. Its weights are drawn ten times wider
    than transformers' default, which would leave every score within 1e-3 of zero, too close together
    for tests to tell documents apart.
    """
    path.mkdir(parents=True, exist_ok=True)
    vocab = unigram_vocab()
    # XLMRobertaTokenizer wraps the vocab in a tokenizers Unigram model with XLM-R's pre-tokenizer and
    # `<s> $A </s>` post-processor, and saves it as tokenizer.json like the real checkpoints.
    tokenizer = XLMRobertaTokenizer(vocab=vocab, model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(path)

    config = XLMRobertaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_TOKENS + 2,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
    )
    config.num_labels = 1  # rerankers score with one logit; the bare encoder ignores it
    if with_classification_head:
        config.initializer_range = 0.2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = (
            XLMRobertaForSequenceClassification(config)
            if with_classification_head
            else XLMRobertaModel(config)
        )
    model.save_pretrained(path)
    return path


def add_sparse_head(model_dir: Path, weight: list[float], bias: float) -> Path:
    """Write bge-m3's `sparse_linear.pt` into `model_dir`: the state dict of a `Linear(hidden, 1)` with
    these hand-set weights, so that each token's lexical weight, relu(weight·h + bias), is known."""
    head = torch.nn.Linear(len(weight), 1)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([weight]))
        head.bias.fill_(bias)
    torch.save(head.state_dict(), model_dir / "sparse_linear.pt")
    return model_dir


QWEN3_CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]
QWEN3_THINK_TOKENS = ["<think>", "</think>"]  # added but not special in Qwen3's tokenizer, as here
QWEN3_PROMPT_WORDS = [
    "system user assistant Judge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".',
    "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n<Query>: "
    "\n<Document>: \n\n",
    "yes",
    "no",
]


def byte_level_bpe(texts: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab and merges under which every Qwen pre-token of `texts` is one token.

    Each pre-token gets the chain of merges that builds it left to right (`Ġ y`, `Ġy es`...); the 256
    byte symbols come first, so any other text still tokenises, byte by byte, as with the real vocab.
    Counted rather than trained, for identical files on every build.
    """
    pre_tokenizer = Qwen2Tokenizer().backend_tokenizer.pre_tokenizer
    words = sorted({piece for text in texts for piece, _ in pre_tokenizer.pre_tokenize_str(text)})
    merges = sorted(
        {(word[:i], word[i]) for word in words for i in range(1, len(word))},
        key=lambda pair: (len(pair[0]), pair),
    )
    vocab = {symbol: i for i, symbol in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    for left, right in merges:
        vocab.setdefault(left + right, len(vocab))
    return vocab, merges


def build_tiny_qwen3(path: Path) -> Path:
    """Save a Qwen3-Reranker-shaped tokenizer and 2-layer, 32-wide `Qwen3ForCausalLM`; builds are identical.

    Weights are drawn ten times wider than the default so that P(yes) differs visibly between documents.
    """
    path.mkdir(parents=True, exist_ok=True)
    vocab, merges = byte_level_bpe(CORPUS + QWEN3_PROMPT_WORDS)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in QWEN3_CHAT_TOKENS])
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in QWEN3_THINK_TOKENS])
    tokenizer.save_pretrained(path)

    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=4 * MAX_TOKENS,
        initializer_range=0.2,
        tie_word_embeddings=True,  # as in Qwen3-Reranker-0.6B
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen3ForCausalLM(config)
    model.save_pretrained(path)
    return path
