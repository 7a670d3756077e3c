#!/usr/bin/env python3
"""docs/pytorch.md's example: an MLP 784-64-10 (tanh) trained in PyTorch on the bundled
Fashion-MNIST subset, saved as a state_dict for `influence score --weights`.

Run from the repository root: `python3 scripts/pytorch/train_fmnist_mlp.py out/fmnist_mlp.pt`
(Debian: `apt install python3-torch python3-numpy`, then `/usr/bin/python3 ...`).
The L2 term matches `--l2 1e-3 --weight-decay-on all`: (λ/2)‖θ‖² with λ = 1e-3.
"""
import sys

import numpy as np
import torch
from torch import nn

torch.manual_seed(0)
rows = np.loadtxt("data/fmnist_train2000.csv", delimiter=",", skiprows=1)
x = torch.tensor(rows[:, 1:] / 255, dtype=torch.float32)
y = torch.tensor(rows[:, 0], dtype=torch.long)
model = nn.Sequential(nn.Linear(784, 64), nn.Tanh(), nn.Linear(64, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(30):
    for batch in torch.randperm(len(x)).split(64):
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch]) + 0.5e-3 * sum((p ** 2).sum() for p in model.parameters())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
print(f"train accuracy {(model(x).argmax(1) == y).float().mean().item():.4f}")
torch.save(model.state_dict(), sys.argv[1] if len(sys.argv) > 1 else "fmnist_mlp.pt")
