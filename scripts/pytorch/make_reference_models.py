#!/usr/bin/env python3
"""Makes the tiny PyTorch models that tests/Core.Tests/PyTorchWeightsTests.cs loads.

Run from the repository root with a Python that has PyTorch (Debian: `apt install python3-torch`,
then `/usr/bin/python3 scripts/pytorch/make_reference_models.py`). CI does not run it: its outputs
are checked in under tests/Core.Tests/Data/pytorch/. It writes, for an MLP 4-5-3 (tanh, float64)
and a CNN on 1x6x6 images (Conv2d(1, 2, 3), tanh, 2x2 max-pooling, Linear(8, 3), float32):

* NAME.pt: `torch.save(model.state_dict(), ...)`, the usual PyTorch checkpoint;
* NAME.safetensors: the same tensors in the safetensors format (written here byte by byte, so
  the `safetensors` package is not needed; the format is an 8-byte little-endian header length,
  a JSON header of dtype, shape and byte offsets per tensor, then the raw little-endian data);
* reference.json: a few input rows and the logits PyTorch computes on them in float64.
"""
import json
import os
import struct

import torch
from torch import nn

OUT = os.path.join("tests", "Core.Tests", "Data", "pytorch")


def save_safetensors(state, path):
    header, blobs, offset = {}, [], 0
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        data = t.numpy().tobytes()
        dtype = {torch.float32: "F32", torch.float64: "F64"}[t.dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()
    cnn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    mlp_rows = torch.randn(6, 4, dtype=torch.float64)
    cnn_rows = torch.rand(5, 36, dtype=torch.float64)
    reference = {}
    for name, model, rows, shape in [("mlp", mlp, mlp_rows, (-1, 4)), ("cnn", cnn, cnn_rows, (-1, 1, 6, 6))]:
        state = model.state_dict()
        torch.save(state, os.path.join(OUT, f"{name}.pt"))
        save_safetensors(state, os.path.join(OUT, f"{name}.safetensors"))
        with torch.no_grad():
            logits = model.double()(rows.view(*shape))
        reference[name] = {"rows": rows.tolist(), "logits": logits.tolist()}
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(reference, f, indent=1)
    print(f"wrote {OUT}: mlp.pt, mlp.safetensors, cnn.pt, cnn.safetensors, reference.json (PyTorch {torch.__version__})")


if __name__ == "__main__":
    main()
