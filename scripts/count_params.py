"""Tunable parameters per method on ViT-B/16, head excluded, counted on the model the harness builds.

    python scripts/count_params.py [--classes 100] [--out results/bench/param_counts.csv]

Builds timm's `vit_base_patch16_224` with random weights (pretrained=False: counts do not depend
on the weights), applies each method with the settings listed, and counts the parameters that
train, less the classifier head. docs/methods.md sets these next to the counts the papers report.
"""
import argparse
import csv
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# (method, its arguments): the settings of the rows the papers report, then our defaults where they differ
SETTINGS = [
    ("full", {}), ("linear", {}), ("bias", {}), ("difffit", {}),
    ("adapter", {"bottleneck": 8}),
    ("adapter_houlsby", {"bottleneck": 8}), ("adapter_houlsby", {"bottleneck": 64}),
    ("adapter_plus", {"bottleneck": 8}), ("adapter_plus", {"bottleneck": 8, "position": "houlsby"}),
    ("adapter_plus", {"bottleneck": 8, "position": "pfeiffer", "norm": True, "scaling": "constant"}),
    ("adaptformer", {"bottleneck": 8}), ("adaptformer", {"bottleneck": 64}),
    ("convpass", {"bottleneck": 8}),
    ("repadapter", {"bottleneck": 8, "groups": 2}),
    ("vpt_shallow", {"length": 10}), ("vpt", {"length": 10}),
    ("lora", {"r": 8}), ("lora", {"r": 4}),
    ("fact_tt", {"rank": 8}), ("fact_tt", {"rank": 16}), ("fact_tk", {"rank": 32}),
    ("ssf", {}),
    ("ln", {}), ("partial", {"k": 1}), ("partial", {"k": 1, "final_norm": False}),
    ("partial", {"k": 1, "part": "attn", "final_norm": False}),
    ("partial", {"k": 1, "part": "mlp", "final_norm": False}),
    ("vqt", {"tokens": 1}),
]


def count(name: str, args: dict, classes: int) -> tuple[int, int]:
    """(tunable parameters without the head, the head's parameters)."""
    import timm
    import torch

    from methods import METHODS, method_config

    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=classes)
    model = METHODS[name].apply(model, method_config(name, args))
    head = {id(p) for p in model.get_classifier().parameters()}  # after: vqt replaces the head with a wider one
    head_n = sum(p.numel() for p in model.get_classifier().parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad and id(p) not in head), head_n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=100)
    ap.add_argument("--out", default="results/bench/param_counts.csv")
    args = ap.parse_args()
    from bench.records import atomic_file

    rows = []
    print("| method | settings | tunable parameters, head excluded |")
    print("|---|---|---|")
    for name, margs in SETTINGS:
        n, _ = count(name, margs, args.classes)
        setting = ", ".join(f"{k} {v}" for k, v in margs.items()) or "default"
        rows.append({"method": name, "settings": setting, "tunable_params_no_head": n})
        print(f"| {name} | {setting} | {n:,} ({n / 1e6:.3f}M) |", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
