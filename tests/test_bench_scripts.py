"""The benchmark scripts run end to end on tiny settings and write what they print (their numbers go in docs/speed.md)."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from bench import PROJECT_ROOT


@pytest.mark.process
def test_method_benchmark_writes_its_csv_and_times_a_vtab_sized_run(tmp_path):
    out = tmp_path / "methods.csv"
    proc = subprocess.run(
        [sys.executable, "scripts/bench_methods.py", "--backbones", "tiny_vit,tiny_convnext", "--methods",
         "full,ssf,vpt,linear", "--steps", "2", "--rounds", "2", "--min-loop-s", "0", "--infer-iters", "2", "--no-linear-probe",
         "--vtab-run", "--vtab-images", "64", "--vtab-epochs", "2", "--vtab-test", "100", "--out", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(out.open()))
    assert [(r["backbone"], r["method"]) for r in rows] == [(b, m) for b in ("tiny_vit", "tiny_convnext")
                                                          for m in ("full", "ssf", "vpt", "linear")]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 7 and rows[6]["status"].startswith("unsupported")  # VPT needs tokens: not on a CNN
    full = {r["backbone"]: float(r["train_img_s_ours"]) for r in ok if r["method"] == "full"}
    for r in ok:
        assert float(r["train_img_s_ours"]) > 0 and float(r["train_img_s_bare"]) > 0 and float(r["ours_over_bare"]) > 0
        assert float(r["infer_ratio"]) > 0 and int(r["steps"]) >= 2
        # step time over full's on the same backbone, from the images/s this run measured
        assert float(r["step_over_full"]) == round(full[r["backbone"]] / float(r["train_img_s_ours"]), 3)
    assert rows[6]["step_over_full"] == "" and "| step_over_full |" in proc.stdout
    assert {r["merged"] for r in ok if r["method"] == "ssf"} == {"True"}
    (job,) = csv.DictReader((tmp_path / "methods_vtab_run.csv").open())
    assert job["backbone"] == "tiny_vit" and float(job["train_s"]) > 0 and float(job["total_s"]) >= float(job["train_s"])
    assert float(job["train_img_s"]) > 0 and 0 <= float(job["test_top1_random_labels"]) <= 100
    assert "| tiny_vit | ssf |" in proc.stdout and "VTAB-1k-sized SSF run" in proc.stdout


def test_step_over_full_is_full_images_per_s_over_the_method_s_on_the_same_backbone():
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    from bench_methods import add_step_over_full

    rows = [{"backbone": "a", "method": "full", "status": "ok", "train_img_s_ours": 900.0},
            {"backbone": "a", "method": "fact_tk", "status": "ok", "train_img_s_ours": 600.0},
            {"backbone": "a", "method": "vpt", "status": "unsupported: no tokens"},
            {"backbone": "b", "method": "lora", "status": "ok", "train_img_s_ours": 500.0}]  # b: full not measured
    add_step_over_full(rows)
    assert [r.get("step_over_full") for r in rows] == [1.0, 1.5, None, None]


def test_demo_benchmark_sums_the_runs_own_seconds_from_their_records(tmp_path):
    """bench_demo's second line: what the records measured, summed by phase, and the lanes' share of the wall."""
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    from bench_demo import runs_summary

    times = [(4.0, 3.0, 0.5, 0.25, 0.25), (6.0, 4.5, 1.0, 0.25, 0.25)]
    for i, (wall, train, ev, setup, deploy) in enumerate(times):
        run = tmp_path / "runs" / "mini" / f"m{i}" / "s0"
        run.mkdir(parents=True)
        (run / "record.json").write_text(json.dumps({"status": "completed", "wall_time_s": wall,
                                                     "train_time_s": train, "eval_time_s": ev,
                                                     "setup_time_s": setup, "deploy_time_s": deploy}))
    failed = tmp_path / "runs" / "mini" / "m2" / "s0"
    failed.mkdir(parents=True)
    (failed / "record.json").write_text(json.dumps({"status": "failed", "wall_time_s": 1.0, "train_time_s": None}))
    (tmp_path / "runs" / "mini" / "m3").mkdir()
    (tmp_path / "runs" / "mini" / "m3" / "record.json").write_text("{not json")
    assert runs_summary(tmp_path, wall=11.0, lanes=2) == (
        "runs: 3 (2 completed, 1 unreadable); their own seconds summed 11.0 (training 7.5, evaluation 1.5, "
        "set-up 0.5, deployment 0.5); 2 lane(s) busy 50 % of the demo's wall")


@pytest.mark.process
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --gpu-check would run")
def test_gpu_check_refuses_without_a_gpu():
    proc = subprocess.run([sys.executable, "scripts/bench_methods.py", "--gpu-check"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--gpu-check needs a CUDA device" in proc.stderr


@pytest.mark.process
def test_whole_run_benchmark_prints_the_figures_it_measured(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/bench_run.py", "--repeat", "1", "--epochs", "1", "--train", "40",
                           "--test", "10", "--out", str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-3000:]
    (row,) = csv.DictReader((tmp_path / "bench_run.csv").open())
    assert float(row["wall_s"]) > float(row["train_s"]) > 0 and float(row["eval_s"]) > 0
    assert float(row["outside_train_eval_s"]) == pytest.approx(
        float(row["wall_s"]) - float(row["train_s"]) - float(row["eval_s"]))
    assert 0 < float(row["train_peak_mb"]) <= float(row["run_peak_mb"])
    assert "medians of 1 runs" in proc.stdout and "official, issue 16's measurement" in proc.stdout
    assert "(243.0 s: " in proc.stdout


OFFICIAL_LOG = """\
Train: 0 [   0/31 (  0%)]  Loss: 3.861 (3.86)  Time: 2.903s,   11.02/s  (2.903s,   11.02/s)  LR: 1.000e-07  Data: 0.9 (0.9)
Train: 0 [  30/31 (100%)]  Loss: 3.910 (3.84)  Time: 1.827s,   17.51/s  (2.000s,   16.00/s)  LR: 1.000e-07  Data: 0.004 (0.019)
Test: [   0/9]  Time: 0.847 (0.847)  Loss:  3.9625 (3.9625)  Acc@1:  3.1250 ( 3.1250)  Acc@5: 12.5000 (12.5000)
Test: [   9/9]  Time: 0.197 (0.500)  Loss:  3.9024 (3.9505)  Acc@1:  0.0000 ( 2.5000)  Acc@5:  0.0000 (10.0000)
Current checkpoints:
Train: 1 [  30/31 (100%)]  Loss: 3.724 (3.86)  Time: 1.795s,   17.83/s  (1.500s,   21.33/s)  LR: 5.000e-03  Data: 0.004 (0.019)
Test: [   9/9]  Time: 0.194 (0.400)  Loss:  3.9024 (3.9505)  Acc@1:  9.0000 ( 4.0000)  Acc@5:  0.0000 (10.0000)
*** Best metric: 4.0 (epoch 1)
"""


def test_official_log_gives_epoch_times_images_and_the_last_top1():
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    from bench_run import parse_official_log

    got = parse_official_log(OFFICIAL_LOG, batch_size=32, n_test=300)
    # each epoch: 31 batches x its average batch time; each evaluation: 10 batches x its average
    assert got["train_s"] == pytest.approx(31 * 2.0 + 31 * 1.5) and got["train_images"] == 2 * 31 * 32
    assert got["eval_s"] == pytest.approx(10 * 0.5 + 10 * 0.4) and got["eval_images"] == 600
    assert got["test_top1"] == 4.0 and got["epochs_evaluated"] == 2
    with pytest.raises(ValueError, match="no complete training epoch"):
        parse_official_log(OFFICIAL_LOG.split("Test:")[0], batch_size=32, n_test=300)


@pytest.mark.process
def test_official_runner_runs_a_cuda_script_unmodified_on_the_cpu(tmp_path):
    (tmp_path / "helper.py").write_text("VALUE = 7\n")
    (tmp_path / "train.py").write_text(
        "import sys, torch, torch.nn as nn\n"
        "from helper import VALUE\n"  # the checkout's own modules import, as the official models/ do
        "torch.cuda.set_device(0)\n"
        "model = nn.Linear(2, 2).cuda()\n"
        "x = torch.ones(1, 2).cuda()\n"
        "torch.cuda.synchronize()\n"
        "print('ran', VALUE, model(x).device, sys.argv[1:])\n")
    runner = str(PROJECT_ROOT / "scripts" / "official_ssf_cpu.py")
    proc = subprocess.run([sys.executable, runner, str(tmp_path), "--epochs", "3"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "ran 7 cpu ['--epochs', '3']"
    proc = subprocess.run([sys.executable, runner, str(tmp_path / "missing")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0 and "no train.py in" in proc.stderr


@pytest.mark.process
def test_sweep_benchmark_times_the_status_of_a_grid():
    proc = subprocess.run([sys.executable, "scripts/bench_sweep.py", "--repeat", "1", "method=ssf,lora",
                           "dataset=mini/count", "seed=0,1,2,3,4"], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "10 runs, 2 distinct compositions" in proc.stdout and "ms per run" in proc.stdout


def test_parameter_counts_on_vit_b_match_the_formulas():
    """scripts/count_params.py's counts (docs/methods.md table) on the real ViT-B/16 shape, against formulas by hand."""
    sys.path.insert(0, str(PROJECT_ROOT / "scripts"))
    from count_params import count

    d, blocks = 768, 12
    ssf_sites = d + blocks * (d + 3 * d + d + d + 4 * d + d) + d  # patch embed, per block, final norm
    want = {("ssf", ()): 2 * ssf_sites,  # 205,824: V-PETL's "0.21M"
            ("adaptformer", (("bottleneck", 8),)): blocks * (2 * d * 8 + 8 + d),
            ("repadapter", (("bottleneck", 8), ("groups", 2))): 2 * blocks * (d * 8 + 8 + 4 * d + d),
            ("fact_tt", (("rank", 8),)): 2 * d * 8 + blocks * (4 * 64 + 2 * 4 * 64),
            ("lora", (("r", 8),)): blocks * 8 * (d + 3 * d)}
    for (name, args), n in want.items():
        assert count(name, dict(args), classes=10)[0] == n, name
