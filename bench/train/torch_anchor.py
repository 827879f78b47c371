#!/usr/bin/env python3
"""The PyTorch speed anchor for kiln's training engine: trains the same
Fashion-MNIST network as bench/train/fmnist.c (--net tutorial: conv32 3x3
relu, maxpool 2, conv64 3x3 relu, maxpool 2, flatten, dense128 relu,
dense10, VALID convs; Adam, softmax cross-entropy) with the same batch size
and thread count on the CPU, and prints images/s of training steps as one
JSON line, measured like fmnist --steps: consecutive batches of the
training set, a warm-up of steps/10 + 1 steps, then `steps` timed steps.

    torch_anchor.py --threads T [--batch 64] [--steps 300] [--data DIR]
"""
import argparse
import gzip
import json
import time

import numpy as np
import torch
import torch.nn as nn


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def tutorial_net():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    images = read_idx(f"{a.data}/train-images-idx3-ubyte.gz")
    labels = read_idx(f"{a.data}/train-labels-idx1-ubyte.gz")
    x_all = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y_all = torch.from_numpy(labels.astype(np.int64))
    net = tutorial_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    n = x_all.shape[0]

    def run(steps):
        t0 = time.perf_counter()
        for s in range(steps):
            start = (s * a.batch) % (n - a.batch)
            x, y = x_all[start:start + a.batch], y_all[start:start + a.batch]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()
        return steps * a.batch / (time.perf_counter() - t0)

    run(a.steps // 10 + 1)
    ips = run(a.steps)
    print(json.dumps({"framework": f"torch {torch.__version__}", "batch": a.batch,
                      "threads": a.threads, "steps": a.steps,
                      "images_per_second": round(ips, 1)}))


if __name__ == "__main__":
    main()
