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


# A small TextClassifier for recipes in tests (weights written by ``save_tiny_lstm``): the recipe's model section.
TINY_LSTM = """\
model:
  class: task:TextClassifier
  weights: tiny.pt
  kwargs: {vocab_size: 120, embed_dim: 8, hidden_dim: 8}
  vocab_size: 120
"""


def save_tiny_lstm(folder, seed: int = 3) -> None:
    """Write ``tiny.pt``: seeded random weights of the TextClassifier that ``TINY_LSTM`` names."""
    import torch

    import task

    torch.manual_seed(seed)
    torch.save(task.TextClassifier(vocab_size=120, embed_dim=8, hidden_dim=8).state_dict(), folder / "tiny.pt")
