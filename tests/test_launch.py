"""launch.py: group glob expansion, option validation, variant names, bad input from the CLI."""
import pytest

from bench.launch.cli import expand_group_args, group_options
from bench.launch.identity import variant_from_overrides
from conftest import run_cli


def test_glob_expands_nested_groups():
    out = expand_group_args(["method=ssf,vpt", "dataset=mini/*", "train.lr=0.1,0.2", "-m"])
    assert out[0] == "method=ssf,vpt"
    mini = [o for o in group_options("dataset") if o.startswith("mini/")]
    assert out[1] == "dataset=" + ",".join(mini) and len(mini) == 5
    assert out[2:] == ["train.lr=0.1,0.2", "-m"]  # not a config group: untouched


def test_glob_star_over_flat_group_and_mixed_items():
    assert expand_group_args(["method=*"]) == ["method=" + ",".join(group_options("method"))]
    assert expand_group_args(["method=vpt*,ssf"]) == ["method=vpt,vpt_shallow,ssf"]
    assert expand_group_args(["dataset=mini/d*"]) == ["dataset=mini/digits,mini/dspr_loc,mini/dspr_ori"]
    assert expand_group_args(["hydra/launcher=submitit_local"]) == ["hydra/launcher=submitit_local"]


@pytest.mark.parametrize("arg,bad", [("dataset=nope/*", "'nope/*'"), ("method=nope", "'nope'"),
                                     ("method=ssf,lo?x", "'lo?x'")])
def test_no_match_exits_2_listing_options(arg, bad, capsys):
    with pytest.raises(SystemExit) as e:
        expand_group_args([arg])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert bad in err and "valid options:" in err
    group = arg.split("=")[0]
    assert all(o in err for o in group_options(group))


def test_variant_from_overrides():
    assert variant_from_overrides(["method=ssf", "dataset=mini/count", "seed=1"]) == ""
    assert variant_from_overrides(["train.lr=0.01", "method.r=8", "train.progress=false"]) == "r8_lr0.01"


@pytest.mark.parametrize("args,needle", [
    (["-m", "method=ssf", "dataset=nope/*"], "mini/count"),
    (["method=bogus"], "valid options: adapter, adapter_houlsby, adapter_plus, adaptformer, bias"),
    (["backbone=resnet_huge"], "valid options: "),
    (["+method.rank=8", "method=lora"], "error: method.rank: unknown key; valid: r, alpha, dropout, target_modules"),
])
@pytest.mark.process
def test_cli_bad_input_exits_nonzero_without_records(args, needle, tmp_path):
    proc = run_cli("launch.py", *args, f"results_dir={tmp_path}", timeout=120)
    assert proc.returncode != 0
    assert needle in proc.stderr + proc.stdout
    assert not list(tmp_path.rglob("record.json"))  # a run that did not start leaves no record
