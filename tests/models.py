"""Tiny random-weight XLM-RoBERTa checkpoints built at test time (the hub cannot be reached from tests).

They have bge-m3's layout (tokenizer.json + config.json + model.safetensors, XLM-R special tokens and
position offset), so encoders and rerankers load them through exactly the code path of the real models.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from pathlib import Path

import torch
from transformers import (
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
    the shape of cross-encoder rerankers such as bge-reranker-v2-m3.
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
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = (
            XLMRobertaForSequenceClassification(config)
            if with_classification_head
            else XLMRobertaModel(config)
        )
    model.save_pretrained(path)
    return path
