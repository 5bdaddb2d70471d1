"""One run, start to end: identity -> data -> model -> method -> train -> evaluate -> record.

`run(cfg)` is the whole library seen from outside: launch.py calls it once per Hydra job,
and tests or notebooks can call it directly with a `RunConfig`.
"""
import dataclasses
import random
import time
import traceback
from datetime import datetime, timezone

import numpy as np
import torch
import torch.nn as nn

import methods
from bench import predictions, records, trackers
from bench.config import PROTOCOLS, RunConfig, TrainConfig, config_hash, result_config
from bench.data import describe, list_splits, load_splits
from bench.data.batching import batches
from bench.data.on_device import to_device
from bench.models import build_backbone, data_config, init_head, normalization
from bench.run import env, memory
from bench.run.deploy import deployable, images_per_s, n_params
from bench.train import checkpoint, dist, linear_probe
from bench.train.evaluate import accuracy, evaluate_robustness, predict, top1
from bench.train.loop import autocast_dtype, train
from bench.train.optim import base_lr


def _now() -> str:
    """UTC, ISO 8601 to the millisecond: runs shorter than a second, a sweep's on the mini tasks, are still ordered
    (records written before 2026-12-08 have whole seconds; the strings of both sort in time order)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def with_method(model: nn.Module, method: methods.Method, method_cfg, train: TrainConfig) -> tuple[nn.Module, set[int]]:
    """The method applied, with `train.tune_norms`; a classifier the method replaced (vqt widens it) gets the
    recipe's head init as the backbone's did. Returns the model and the ids of its classifier's parameters."""
    classifier = model.get_classifier()
    model = methods.apply_method(model, method, method_cfg, train.tune_norms)
    if model.get_classifier() is not classifier:
        init_head(model, train.head_init)
    return model, {id(p) for p in model.get_classifier().parameters()}


def run(cfg: RunConfig) -> dict:
    """Run one configuration and write its record; returns the record.

    Invalid configuration (unknown method, bad method arguments) raises before anything is
    written. Once the run has started, a failure writes a `failed` record and re-raises; a
    method that does not apply to the backbone writes an `unsupported` record and returns.
    """
    method = methods.get_method(cfg.method)
    method_cfg = methods.method_config(cfg.method, cfg.method_args)

    # --- identity -------------------------------------------------------------------------
    out_dir = records.run_dir(cfg.results_dir, cfg.backbone.name, cfg.dataset.name, cfg.method, cfg.variant,
                              cfg.protocol, cfg.seed)
    device = dist.setup(cfg.train.dist_timeout_s) or env.pick_device(cfg.train.device)  # several processes: this rank's
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
    record = {
        "schema": records.SCHEMA, "status": "running", "error": None,
        "method": cfg.method, "variant": cfg.variant, "dataset": cfg.dataset.name,
        "benchmark": cfg.dataset.benchmark, "group": cfg.dataset.group, "backbone": cfg.backbone.name,
        "backbone_arch": cfg.backbone.arch, "protocol": cfg.protocol, "seed": cfg.seed,
        "recipe": cfg.recipe.name, "recipe_checkpoint": cfg.recipe.checkpoint,
        "same_checkpoint_as_recipe": (cfg.backbone.arch == cfg.recipe.checkpoint) if cfg.recipe.checkpoint else None,
        "effective_lr": base_lr(cfg.train),
        # few-shot lists and many-shot subsets: which training images, independent of the run seed
        "shots": cfg.dataset.shots if cfg.dataset.format == "meta_list" else None,
        "fewshot_seed": cfg.dataset.fewshot_seed if cfg.dataset.format == "meta_list" else None,
        "train_subset": cfg.dataset.train_subset or None,
        "subset_seed": cfg.dataset.subset_seed if cfg.dataset.train_subset else None,
        "config": dataclasses.asdict(cfg) | {"method_args": dataclasses.asdict(method_cfg)},
        "git": env.git_state(), "env": env.packages(), "hardware": env.hardware(device),
        # one process, or the data-parallel group that ran it (bench/train/dist.py); rank 0 writes the record
        "distributed": {"world_size": dist.world(), "per_rank_batch": cfg.train.batch_size // dist.world(),
                        "global_batch": cfg.train.batch_size, "backend": dist.backend(),
                        "devices": dist.gather(str(device))},
        "started_at": _now(),
    }
    # what a relaunch compares (bench.launch.sweep.other_config) and analyze.py groups by; from the method's arguments
    # filled in, as a run built in Python with some of them names the same configuration as launch.py's
    record["config_hash"] = config_hash(record["config"])
    label = f"{cfg.backbone.name} {cfg.dataset.name} {records.method_label(cfg.method, cfg.variant)} seed{cfg.seed}"
    t_start = time.perf_counter()
    per_run_memory = memory.reset_peak_memory(device)
    rss_at_start = memory.status_mb("VmRSS") if per_run_memory and device.type != "cuda" else None
    tracker = trackers.open_trackers(cfg, out_dir, record["config"], dist.is_main())  # rank 0's; a bad logger raises here
    if dist.is_main():  # a previous attempt's rank errors are not this one's
        for stale in out_dir.glob("rank*.error.json"):
            stale.unlink()
    try:
        # --- data and model ---------------------------------------------------------------
        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        # each split listed and checked once: a broken dataset fails here, before any model is built
        listed = list_splits(cfg.dataset, PROTOCOLS[cfg.protocol])
        model = build_backbone(cfg.backbone, cfg.dataset.num_classes, drop_path=cfg.train.drop_path)
        init_head(model, cfg.train.head_init)
        mean, std = normalization(cfg.dataset.norm, data_config(model))
        record["normalization"] = {"mean": list(mean), "std": list(std)}
        train_split, monitor_split, report_split = PROTOCOLS[cfg.protocol]
        splits = load_splits(cfg.dataset, {train_split, monitor_split, report_split}, mean, std, listed=listed)
        # a checkpoint written on other data (same names, other bytes) is never resumed (bench/data/version.py)
        data_version = describe(cfg.dataset, splits)["version"]
        splits = to_device(splits, device, cfg.train.data_on_device)  # batches gathered where the model runs
        model, head_ids = with_method(model, method, method_cfg, cfg.train)
        model = model.to(device)

        tunable = [p for p in model.parameters() if p.requires_grad]
        record["tunable_params"] = sum(p.numel() for p in tunable)
        record["tunable_params_no_head"] = sum(p.numel() for p in tunable if id(p) not in head_ids)
        record["total_params"] = sum(p.numel() for p in model.parameters())

        record["setup_time_s"] = time.perf_counter() - t_start  # data (cache building included), model, method

        # --- train, monitoring one split every epoch ----------------------------------------
        bs, prog, amp = eval_batch_size(cfg.train), cfg.train.progress, autocast_dtype(cfg.train, device)
        eval_s = [0.0]  # time in evaluation passes (per epoch and final)
        outcomes = {}  # split -> (pred, target) of its latest evaluation: the report split's are the final model's

        def score(m, split: str) -> float:
            t = time.perf_counter()
            outcomes[split] = predict(m, data[split], bs, device, f"{label} {split}", prog, amp)
            eval_s[0] += time.perf_counter() - t
            return accuracy(*outcomes[split])

        key = f"{monitor_split}_top1"
        fast = linear_probe.applies(cfg)
        t0 = time.perf_counter()
        # fast path: the head trains on features extracted once; it is the model's own classifier
        data = {s: linear_probe.features(model, d.dataset, bs, device, amp) for s, d in splits.items()} if fast \
            else {s: d.dataset for s, d in splits.items()}
        trainee = model.get_classifier() if fast else model
        extract_s = time.perf_counter() - t0
        # a pruned search's trial (bench/prune.py): each epoch's val top-1 to its Optuna study, which may stop it
        from bench.prune import Pruning

        pruning = Pruning.open(out_dir) if cfg.protocol == "val" and dist.world() == 1 else None
        last_epoch = cfg.train.epochs + cfg.train.cooldown_epochs

        def on_epoch(e, m) -> dict:
            entry = {key: score(m, monitor_split)}
            if pruning is not None and pruning.report(e, entry[key]) and e < last_epoch:
                entry["pruned"] = True  # bench.train.loop stops after this epoch
            return entry

        out = train(trainee, data[train_split], cfg.train, num_classes=cfg.dataset.num_classes, seed=cfg.seed,
                    device=device, desc=label, channels_last=cfg.backbone.channels_last and device.type == "cuda",
                    checkpoint=out_dir / checkpoint.CHECKPOINT,
                    checkpoint_config=result_config(record["config"]) | {"data_version": data_version,
                                                                          "linear_fast_path": fast},
                    on_epoch=on_epoch, tracker=tracker)
        record["train_peak_memory_mb"] = memory.peak_memory_mb(device, per_run_memory)[0]  # up to the end of training
        history, trainee = out["history"], out["eval_model"]
        if fast:
            model.get_classifier().load_state_dict(trainee.state_dict())  # the EMA head, when enabled, ships
        else:
            model = trainee
        record["linear_fast_path"] = fast
        record["resumed_from_epoch"] = out["resumed_from_epoch"]
        record["optimizer_steps"] = out["steps"]

        # --- evaluate and record ------------------------------------------------------------
        # The headline is the final epoch's score; with the `paper` protocol the monitored split is
        # the test split, so the best epoch is selected on test: recorded, flagged, never the headline.
        if monitor_split == report_split:
            record[f"{report_split}_top1"] = history[-1][key]
            record[f"{report_split}_top1_best_epoch_optimistic"] = max(h[key] for h in history)
        else:
            record[f"{monitor_split}_top1"] = history[-1][key]
            record[f"{report_split}_top1"] = score(trainee, report_split)
        record["fit_time_s"] = time.perf_counter() - t0  # training start to final score, evaluations included
        if pruning is not None:
            record["pruned"] = bool(history[-1].get("pruned"))
            record["pruned_at_epoch"] = history[-1]["epoch"] if record["pruned"] else None
            pruning.finish(record[key], record["pruned"])
        record["eval_time_s"] = eval_s[0]
        record["eval_batch_size"] = bs
        record["data"] = describe(cfg.dataset, splits)
        # unreadable images skipped (on_bad_image=skip) are read, and counted, by each rank apart
        test_skipped = int(dist.all_sum(splits[report_split].bad_images)[0])
        if not dist.is_main():  # the rest (robustness, weights, the deployed model, the record) is rank 0's
            record.update(status="completed", history=history)
            return record
        target_outcomes = {}  # robustness and domain-shift targets: name -> their predictions
        if cfg.dataset.robustness or cfg.dataset.domain_shift:
            record["robustness"] = evaluate_robustness(model, cfg.dataset, mean, std, device, bs, cfg.train.progress,
                                                       target_outcomes)
        if cfg.save_weights:
            save_trained(model, out_dir / records.WEIGHTS)
        record.update(deploy(model, method, cfg, splits[report_split].dataset, record[f"{report_split}_top1"], device,
                             label, out["train_seconds"]))
        peak, kind = memory.peak_memory_mb(device, per_run_memory)
        if kind == "run_peak_rss":
            record["memory_at_start_mb"] = rss_at_start  # the process's base (torch, libraries) inside that peak
        train_s = out["train_seconds"] + extract_s  # the fast path's feature extraction counts as training
        record.update(status="completed", history=history, train_time_s=train_s,
                      train_images_per_s=out["images_seen"] / max(train_s, 1e-9),
                      peak_memory_mb=peak, peak_memory_kind=kind)
        # last, once everything else succeeded: a failed run leaves no predictions file. The report
        # split's latest evaluation is the one that gave its score (paper: the final epoch's)
        if accuracy(*outcomes[report_split]) != record[f"{report_split}_top1"]:
            raise RuntimeError(f"the saved {report_split} predictions are not those of the recorded score")
        record.update(save_predictions(out_dir, outcomes[report_split], record["data"]["splits"][report_split],
                                       cfg.dataset.num_classes, test_skipped, target_outcomes))
    except methods.Unsupported as e:
        record.update(status="unsupported", error={"type": "Unsupported", "message": str(e)})
    except (Exception, KeyboardInterrupt) as e:
        dist.shield()
        record.update(status="failed", error={"type": type(e).__name__, "message": str(e),
                                              "traceback": traceback.format_exc()})
        if dist.world() > 1:
            record["error"]["rank"] = dist.rank()
            if not dist.is_main():  # rank 0 writes the record; this rank's error goes beside it for rank 0 to name
                records.write_json_atomic(out_dir / f"rank{dist.rank()}.error.json", record["error"])
                raise
            record["error"]["other_ranks"] = _rank_errors(out_dir)
            ranks = ", ".join(f"rank {r['rank']}: {r['type']}: {r['message']}" for r in record["error"]["other_ranks"])
            if ranks:
                record["error"]["message"] += f" (first failure elsewhere: {ranks})"
        _finish(record, out_dir, t_start, label, tracker)
        raise
    _finish(record, out_dir, t_start, label, tracker)
    if record["status"] == "completed":
        (out_dir / checkpoint.CHECKPOINT).unlink(missing_ok=True)  # the record is the result now
    return record


def save_predictions(out_dir, outcome, split_info: dict, num_classes: int, skipped: int, targets: dict) -> dict:
    """Write the test split's (and each robustness target's) per-image predictions (bench/predictions.py)
    beside the record; returns the record's fields that point to them.

    `predictions_complete` is false when an unreadable image was skipped (on_bad_image=skip) in the
    test split or a target: the arrays then miss or repeat images and must not be paired by fingerprint.
    """
    pred, target = outcome
    entries = predictions.arrays(pred, target, split_info["fingerprint"], num_classes)
    bad = {"test": skipped}
    for name, t in targets.items():
        entries |= predictions.arrays(t["pred"], t["target"], t["fingerprint"], t["num_classes"], name)
        bad[name] = t["bad_images"]
    predictions.save(out_dir / records.PREDICTIONS, entries)
    return {"test_fingerprint": split_info["fingerprint"], "predictions": records.PREDICTIONS,
            "predictions_images": len(pred), "predictions_complete": not any(bad.values()),
            "predictions_bad_images": {k: v for k, v in bad.items() if v}}


def _rank_errors(out_dir, wait_s: float = 5.0) -> list[dict]:
    """The other ranks' errors written beside the record (waiting briefly: a dead peer is seen before its file)."""
    import json

    deadline = time.perf_counter() + wait_s
    while True:
        found = sorted(out_dir.glob("rank*.error.json"))
        if found or time.perf_counter() > deadline:
            return [json.loads(p.read_text()) for p in found]
        time.sleep(0.2)


def eval_batch_size(cfg) -> int:
    """`train.eval_batch_size`, or when 0 twice the training batch (at most 512): a forward pass without
    gradients keeps one layer's activations at a time, so at twice the batch it stays under the
    training step's peak, which keeps every layer's for the backward pass."""
    return cfg.eval_batch_size or min(2 * cfg.batch_size, 512)


def deploy(model, method, cfg: RunConfig, data, top1_trained: float, device, label: str, train_s: float) -> dict:
    """Record the deployable model: merged or not, its test top-1, extra parameters, inference speed,
    and the step's own time (`deploy_time_s`).

    The speed is timed on a batch no larger than the training batch (so timing never raises the
    run's memory peak above training's), for `deploy_iters` rounds at least and then while the
    whole step (merge, check, warm-up and timing) has used under `deploy_budget` of the training
    time (at most 20 rounds): a fixed cost that stays a small share of the run. The spread of the
    per-round ratios is recorded with it.
    """
    t_start = time.perf_counter()
    model.eval()  # before copying: the deployed copy must not run drop-path or dropout
    deployed, merged = deployable(model, method)
    deployed.eval()
    backbone = build_backbone(dataclasses.replace(cfg.backbone, pretrained=False), cfg.dataset.num_classes).to(device)
    batch = next(batches(data, min(eval_batch_size(cfg.train), cfg.train.batch_size, 256)))[0].to(device)
    with torch.inference_mode():
        trained_logits, deployed_logits = model(batch), deployed(batch)
    diff = (trained_logits - deployed_logits).abs().max().item()
    out = {"deployed_merged": merged, "backbone_params": n_params(backbone), "inference_params": n_params(deployed),
           "deployed_max_abs_logit_diff": diff, "deployed_check_images": len(batch),
           "deployed_argmax_agreement": (trained_logits.argmax(-1) == deployed_logits.argmax(-1)).float().mean().item()}
    # An unmerged deployed model is the trained model itself: its score is the one just measured. A
    # merged one keeps the trained model's graph with other weights; it is scored on the whole test
    # split only with deploy_score=full (the check above compares its logits on one batch).
    if not merged:
        out["deployed_test_top1"] = top1_trained
    elif cfg.deploy_score == "full":
        out["deployed_test_top1"] = top1(deployed, data, eval_batch_size(cfg.train), device, f"{label} deployed",
                                         cfg.train.progress, autocast_dtype(cfg.train, device), shard=False)
    out["inference_extra_params"] = out["inference_params"] - out["backbone_params"]
    if cfg.deploy_iters > 0:
        speed = images_per_s({"deployed": deployed, "backbone": backbone}, batch, iters=cfg.deploy_iters, warmup=1,
                             budget_s=cfg.deploy_budget * train_s - (time.perf_counter() - t_start))
        ratios = [d / b for d, b in zip(speed["rounds"]["deployed"], speed["rounds"]["backbone"])]
        out.update(inference_images_per_s=speed["deployed"], backbone_inference_images_per_s=speed["backbone"],
                   inference_images_per_s_ratio=speed["deployed"] / speed["backbone"],
                   inference_ratio_min=min(ratios), inference_ratio_max=max(ratios),
                   inference_timing_rounds=len(ratios), inference_batch_size=len(batch))
    out["deploy_time_s"] = time.perf_counter() - t_start
    return out


def save_trained(model: torch.nn.Module, path) -> None:
    """The tunable parameters (head included), atomically; `bench.run.export` rebuilds the rest."""
    from safetensors.torch import save_file

    tensors = {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}
    with records.atomic_file(path) as tmp:
        save_file(tensors, str(tmp))


def _finish(record: dict, out_dir, t_start: float, label: str, tracker=None) -> None:
    if record["status"] != "completed":  # an earlier attempt's predictions are not this run's
        (out_dir / records.PREDICTIONS).unlink(missing_ok=True)
    record["wall_time_s"] = time.perf_counter() - t_start
    record["finished_at"] = _now()
    records.write_json_atomic(out_dir / records.RECORD, record)
    if tracker is not None:  # after the record is safe: final metrics and the record file itself
        tracker.finish(record, out_dir / records.RECORD)
    if record["status"] == "completed":
        extra = f" val {record['val_top1']:.1f}%" if "val_top1" in record else ""
        print(f"[completed] {label}: test {record['test_top1']:.1f}%{extra} | tunable {record['tunable_params']:,}"
              f" of {record['total_params']:,} params | {record['wall_time_s']:.1f}s"
              f" ({record['train_images_per_s']:.0f} img/s)", flush=True)
    else:
        print(f"[{record['status']}] {label}: {record['error']['type']}: {record['error']['message']}", flush=True)
    print(f"  record: {out_dir / records.RECORD}", flush=True)
