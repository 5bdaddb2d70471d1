"""Export the deployable model of a finished run as safetensors.

    python -m bench.export RUN_DIR [--out FILE]

RUN_DIR holds `record.json` and `trained.safetensors` (written by every completed run with
`save_weights: true`). The backbone is rebuilt from the record's config, the method applied,
the trained parameters loaded, and the method merged where it folds.

- Mergeable methods (SSF, LoRA, peft tuners, and full/linear/bias, which change no
  structure) give a plain timm state_dict that loads without any code of ours:
      timm.create_model(arch, pretrained=True, num_classes=N, **kwargs,
                        pretrained_cfg_overlay=dict(file=FILE, num_classes=N))
  (`num_classes` in the overlay keeps the trained head: timm drops a head whose class
  count differs from the overlay's.)
- Methods whose modules stay (VPT, Adapter, ConvNeXt's last-stage SSF) give the full state
  dict of the deployed model plus `<FILE>.json` describing it; `load_deployed(FILE)` rebuilds it.
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

import methods
from bench import records
from bench.config import RunConfig, from_dict
from bench.models import build_backbone
from bench.run.deploy import deployable


def rebuild(cfg: RunConfig, pretrained: bool = True) -> tuple[nn.Module, methods.Method]:
    """The run's trainable model before training: backbone (+ weights) with the method applied.

    Seeded like `bench.run.runner.run`, so a backbone without pretrained weights gets the same frozen init.
    """
    torch.manual_seed(cfg.seed)
    method = methods.get_method(cfg.method)
    backbone_cfg = cfg.backbone if pretrained else dataclasses.replace(cfg.backbone, pretrained=False)
    model = build_backbone(backbone_cfg, cfg.dataset.num_classes)
    return methods.apply_method(model, method, methods.method_config(cfg.method, cfg.method_args),
                                cfg.train.tune_norms), method


def run_config(record: dict) -> RunConfig:
    return from_dict(RunConfig, record["config"])


def export(run_dir: Path, out: Path) -> dict:
    """Write the deployable model of the run in `run_dir` to `out`; returns a summary.

    Raises:
        FileNotFoundError: no record or no trained weights in `run_dir`.
        ValueError: the run did not complete.
    """
    rec_path, weights = run_dir / records.RECORD, run_dir / records.WEIGHTS
    if not rec_path.is_file():
        raise FileNotFoundError(f"no {records.RECORD} in {run_dir}")
    record = json.loads(rec_path.read_text())
    if record.get("status") != "completed":
        raise ValueError(f"run {run_dir} is {record.get('status')!r}, not completed: nothing to export")
    if not weights.is_file():
        raise FileNotFoundError(f"no {records.WEIGHTS} in {run_dir} (was the run made with save_weights=false?)")
    cfg = run_config(record)
    model, method = rebuild(cfg)
    trained = load_file(str(weights))
    missing = set(trained) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{weights}: parameters {sorted(missing)[:5]} do not exist in the rebuilt model")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in trained:
                p.copy_(trained[name])
    deployed, merged = deployable(model, method)
    plain_keys = set(build_backbone(dataclasses.replace(cfg.backbone, pretrained=False),
                                    cfg.dataset.num_classes).state_dict())
    state = {k: v.detach().contiguous() for k, v in deployed.state_dict().items()}
    plain = set(state) == plain_keys
    meta = {"run_dir": str(run_dir), "method": cfg.method, "method_args": cfg.method_args, "merged": merged,
            "plain_timm": plain, "arch": cfg.backbone.arch, "backbone": cfg.backbone.name,
            "backbone_kwargs": cfg.backbone.kwargs, "num_classes": cfg.dataset.num_classes,
            "config": record["config"]}
    with records.atomic_file(out) as tmp:
        save_file(state, str(tmp), metadata={"method": cfg.method, "plain_timm": str(plain)})
    if not plain:
        records.write_json_atomic(out.with_name(out.name + ".json"), meta)
    return meta


def load_deployed(path: str | Path) -> nn.Module:
    """Rebuild a non-plain export (VPT, Adapter, ...) from FILE and FILE.json."""
    path = Path(path)
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    model, method = rebuild(from_dict(RunConfig, meta["config"]), pretrained=False)
    if meta["merged"]:
        model = method.merge(model)
    model.load_state_dict(load_file(str(path)))
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Export a finished run's deployable model as safetensors.")
    ap.add_argument("run_dir", type=Path, help="a run folder holding record.json and trained.safetensors")
    ap.add_argument("--out", type=Path, default=None, help="output file (default: RUN_DIR/deployed.safetensors)")
    args = ap.parse_args(argv)
    out = args.out or args.run_dir / "deployed.safetensors"
    try:
        meta = export(args.run_dir, out)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if meta["plain_timm"]:
        kwargs = "".join(f", {k}={v!r}" for k, v in meta["backbone_kwargs"].items())
        print(f"wrote {out}: a plain timm state_dict ({meta['method']}, merged={meta['merged']}). Load with:\n"
              f"  timm.create_model({meta['arch']!r}, pretrained=True, num_classes={meta['num_classes']}{kwargs},\n"
              f"                    pretrained_cfg_overlay=dict(file={str(out)!r}, num_classes={meta['num_classes']}))")
    else:
        print(f"wrote {out} and {out.name}.json: {meta['method']} keeps extra modules at inference. Load with:\n"
              f"  from bench.run.export import load_deployed; model = load_deployed({str(out)!r})")
    return 0

