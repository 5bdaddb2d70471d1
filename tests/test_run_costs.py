"""The run's fixed costs: the deployed model's timing bounded by a share of training time, and measured."""
import dataclasses
import time
from datetime import datetime, timedelta

import pytest
import torch
import torch.nn as nn

from bench.config import DatasetConfig, RunConfig, TrainConfig, backbone_config
from bench.run.deploy import images_per_s


class Slow(nn.Module):
    def forward(self, x):
        time.sleep(0.002)
        return x


def test_timing_rounds_floor_budget_and_cap():
    x = torch.zeros(4, 2)
    models = {"a": Slow(), "b": Slow()}
    floor = images_per_s(models, x, iters=3, warmup=1, budget_s=0.0)
    assert len(floor["rounds"]["a"]) == len(floor["rounds"]["b"]) == 3  # no budget: the floor
    more = images_per_s(models, x, iters=3, warmup=1, budget_s=0.2, max_iters=200)
    assert 3 < len(more["rounds"]["a"]) < 200  # ~4 ms a round, more on a busy machine: stops at 200 ms
    capped = images_per_s(models, x, iters=3, warmup=1, budget_s=10.0, max_iters=6)
    assert len(capped["rounds"]["a"]) == 6
    assert capped["a"] > 0 and set(capped) == {"a", "b", "rounds"}


def test_a_run_records_its_setup_and_deploy_time_and_timing_spread(tmp_path):
    from bench.run.runner import run

    cfg = RunConfig(method="ssf", dataset=DatasetConfig("mini/count", "mini", "count", "structured", 8, 32),
                    backbone=backbone_config("vit_tiny_mini"), results_dir=str(tmp_path), deploy_iters=2,
                    train=TrainConfig(epochs=1, batch_size=32, progress=False))
    rec = run(cfg)
    assert rec["status"] == "completed"
    assert 0 < rec["setup_time_s"] < rec["wall_time_s"] and 0 < rec["deploy_time_s"] < rec["wall_time_s"]
    # the run's start and end to the millisecond (UTC): runs shorter than a second are still ordered
    start, end = (datetime.fromisoformat(rec[k]) for k in ("started_at", "finished_at"))
    assert rec["started_at"][19] == "." and len(rec["started_at"]) == len("2026-12-08T00:00:00.000+00:00")
    assert start.utcoffset() == timedelta(0) and start <= end
    assert (end - start).total_seconds() == pytest.approx(rec["wall_time_s"], abs=0.5)
    assert rec["inference_batch_size"] == 32  # never above the training batch: timing does not set the memory peak
    assert 2 <= rec["inference_timing_rounds"] <= 20
    assert rec["inference_ratio_min"] <= rec["inference_images_per_s_ratio"] <= rec["inference_ratio_max"]
    # the merged SSF model is checked on one batch by default, not re-scored on the whole test split
    assert rec["deployed_merged"] and "deployed_test_top1" not in rec
    assert rec["deployed_check_images"] == 32 and rec["deployed_argmax_agreement"] == 1.0
    assert rec["deployed_max_abs_logit_diff"] < 1e-4
    full = run(dataclasses.replace(cfg, deploy_score="full", variant="full"))
    assert abs(full["deployed_test_top1"] - full["test_top1"]) <= 0.2  # one image of 1,000 may flip
