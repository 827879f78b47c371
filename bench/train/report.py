#!/usr/bin/env python3
"""Writes bench/train/RESULTS.md (to stdout) from the measurements run.sh
left in OUT: kiln_speed_T.json, torch_speed_T.json, kiln_fit_T.txt,
litert_check.txt.

    report.py OUT THREADS LOAD_BEFORE LOAD_AFTER NPROC CPU"""
import json
import os
import sys


def last_json(path):
    with open(path) as f:
        lines = [l for l in f if l.startswith("{")]
    return json.loads(lines[-1])


def main():
    out, threads, load_before, load_after, nproc, cpu = sys.argv[1:7]
    threads = [int(t) for t in threads.split(",")]
    print("# Training engine: Fashion-MNIST and the PyTorch speed anchor\n")
    print("Written by `bench/train/run.sh` (do not edit by hand). "
          f"Machine: {cpu}, {nproc} CPUs; load average {load_before} before, "
          f"{load_after} after.\n")
    print("Net (both): conv32 3x3 relu, maxpool 2, conv64 3x3 relu, maxpool 2, flatten, "
          "dense128 relu, dense10 (TensorFlow's CNN tutorial net, VALID convs); Adam; "
          "softmax cross-entropy; float32 on the CPU.\n")
    print("## Training speed (images/s of forward + backward + update)\n")
    print("| threads | batch | kiln | PyTorch | kiln / PyTorch |")
    print("|---|---|---|---|---|")
    torch_version = ""
    for t in threads:
        k = last_json(os.path.join(out, f"kiln_speed_{t}.json"))
        p = last_json(os.path.join(out, f"torch_speed_{t}.json"))
        torch_version = p["framework"]
        ratio = k["images_per_second"] / p["images_per_second"]
        print(f"| {t} | {k['batch']} | {k['images_per_second']:.0f} | "
              f"{p['images_per_second']:.0f} | {ratio:.2f}x |")
    print(f"\nPyTorch: {torch_version} from PyPI (bench/train/requirements.txt), "
          "`torch.set_num_threads(T)`, NCHW. Each figure: a warm-up of steps/10 + 1 steps, "
          "then the timed steps over consecutive training batches.\n")
    print("## From scratch to the accuracy target (kiln_fit_classifier)\n")
    print("| threads | epochs | test accuracy | wall time (s) | images/s (last epoch) |")
    print("|---|---|---|---|---|")
    for t in threads:
        r = last_json(os.path.join(out, f"kiln_fit_{t}.txt"))
        print(f"| {t} | {r['epochs']} | {100 * r['test_accuracy']:.2f}% | {r['seconds']:.0f} | "
              f"{r['images_per_second']:.0f} |")
    print("\nAdam lr 1e-3 with half an epoch of linear warmup and cosine decay to 0, "
          "batch 64, random horizontal flips, seed 1; wall time includes the per-epoch "
          "test evaluation. The run at each thread count is bit-identical "
          "(results do not depend on the thread count).\n")
    for t in threads:
        print(f"<details><summary>epochs, {t} thread(s)</summary>\n\n```")
        with open(os.path.join(out, f"kiln_fit_{t}.txt")) as f:
            print(f.read().rstrip())
        print("```\n</details>\n")
    check = os.path.join(out, "litert_check.txt")
    if os.path.exists(check):
        with open(check) as f:
            lines = [l.rstrip() for l in f if "fmnist" in l or "within" in l or "DIFF" in l]
        print("## Export\n")
        print("The trained net exported with `kiln_net_export` (float .tflite), run by "
              "LiteRT on 64 test images against the engine's inference forward "
              "(`bench/train/check_export.py`):\n")
        print("```\n" + "\n".join(lines) + "\n```")


if __name__ == "__main__":
    main()
