"""Tiny nn.Modules that recipes import by path in the tests, to show the mechanism is not TextClassifier-only."""

import torch
import torch.nn as nn


class BagMLP(nn.Module):
    """Mean of token embeddings -> Linear -> ReLU -> Linear; input [sequence, batch] of ids."""

    def __init__(self, vocab_size: int = 1000, embed_dim: int = 8, hidden: int = 16, num_classes: int = 2):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.mlp = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.embedding(text).mean(dim=0))


class BatchFirstLSTM(nn.Module):
    """A small LSTM classifier whose input is [batch, sequence]."""

    def __init__(self, vocab_size: int = 1000, hidden: int = 24):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 16)
        self.rnn = nn.LSTM(16, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.rnn(self.embedding(text))
        return self.fc(hidden[-1])
