"""Small text classifiers for the synthetic sentiment task, to show a recipe can take any of them.

Each is a plain ``nn.Module`` whose ``forward`` takes its inputs positionally, in the order a recipe
lists them, and returns logits [batch, num_classes]. Sizes are keyword arguments so tests can build
tiny ones; the defaults are what ``recipes/weights/*.pt`` hold. ``TRAIN`` holds the training settings
``python -m workbench train --recipe ...`` uses unless a flag says otherwise.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn


class BertClassifier(nn.Module):
    """A small BERT (Hugging Face ``BertForSequenceClassification``, eager attention), built offline.

    ``forward(input_ids, attention_mask)``: both [batch, sequence]; returns the logits tensor.
    """

    # Trained on lengths up to 64 only (attention's cost grows with length squared): the held-out set of
    # lengths 8-256 still scores 99.9%, since counting sentiment ids needs no positions.
    TRAIN: ClassVar[dict[str, int | float]] = {"steps": 500, "learning_rate": 1e-3, "max_len": 64}

    def __init__(
        self,
        vocab_size: int = 1000,
        hidden_size: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        intermediate_size: int = 512,
        max_positions: int = 512,
        num_classes: int = 2,
    ):
        super().__init__()
        from transformers import BertConfig, BertForSequenceClassification  # heavy: only when a BERT is built

        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=intermediate_size,
            max_position_embeddings=max_positions,
            num_labels=num_classes,
            attn_implementation="eager",  # sdpa/flex do not export with the TorchScript exporter as plain ops
        )
        self.bert = BertForSequenceClassification(config)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).logits


class BiLSTMClassifier(nn.Module):
    """Embedding -> two-layer bidirectional LSTM (batch first) -> Linear on the last layer's two final states.

    ``forward(input_ids)``: [batch, sequence].
    """

    TRAIN: ClassVar[dict[str, int | float]] = {"steps": 800, "learning_rate": 3e-3}

    def __init__(
        self,
        vocab_size: int = 1000,
        embed_dim: int = 64,
        hidden_dim: int = 64,
        num_layers: int = 2,
        num_classes: int = 2,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = nn.LSTM(embed_dim, hidden_dim, num_layers=num_layers, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(2 * hidden_dim, num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.rnn(self.embedding(input_ids))
        return self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1))  # last layer: forward, backward


class GRUClassifier(nn.Module):
    """Embedding -> GRU (sequence first, like task.TextClassifier) -> Linear on the final state.

    ``forward(text)``: [sequence, batch].
    """

    TRAIN: ClassVar[dict[str, int | float]] = {"steps": 800, "learning_rate": 3e-3}

    def __init__(self, vocab_size: int = 1000, embed_dim: int = 64, hidden_dim: int = 128, num_classes: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.rnn = nn.GRU(embed_dim, hidden_dim)
        self.fc = nn.Linear(hidden_dim, num_classes)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        _, hidden = self.rnn(self.embedding(text))
        return self.fc(hidden[-1])
