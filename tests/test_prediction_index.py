"""Issue 34 item 3: the index of prediction summaries per results folder (bench/analysis/prediction_index.py).

A second analysis of unchanged runs reads no predictions.npz and writes the same tables; a changed
run is read again, alone; a damaged or tampered index is ignored and rebuilt."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.analysis import cli, prediction_index, stats
from bench.analysis.prediction_index import INDEX, PredictionIndex, stamp

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """48 generated records (VTAB-1k cifar, caltech101, dtd; 10 methods, both protocols) with predictions."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_analyze import generate

    folder = tmp_path_factory.mktemp("results")
    generate(folder, 48)
    return folder


@pytest.fixture
def reads(monkeypatch):
    """Counts the predictions.npz files read (not taken from an index)."""
    seen = []
    real = stats.read_correct

    def counting(path, target=""):
        seen.append(str(path))
        return real(path, target)

    monkeypatch.setattr(stats, "read_correct", counting)
    return seen


def analyse(results: Path, out: Path) -> dict[str, bytes]:
    assert cli.main([str(results), "--out", str(out), "--quiet", "--formats", "csv,md", "--jobs", "1",
                     "--no-published"]) == 0
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith(".")}


def n_files(results: Path) -> int:
    return sum(1 for _ in results.rglob("predictions.npz"))


@pytest.fixture(scope="module")
def first(results, tmp_path_factory):
    """The tables of the first analysis, which read every file and wrote the index."""
    (results / INDEX).unlink(missing_ok=True)
    tables = analyse(results, tmp_path_factory.mktemp("first"))
    assert (results / INDEX).is_file()
    return tables


def test_second_analysis_reads_no_predictions_and_writes_the_same_tables(results, first, tmp_path, reads, capsys):
    second = analyse(results, tmp_path / "b")  # a fresh OUT: no statistics cache, every table recomputed
    assert reads == [] and second == first
    assert "significance_vtab_val.csv" in first and "warning: index" not in capsys.readouterr().err


def test_the_first_analysis_reads_every_file_once(results, tmp_path, reads):
    (results / INDEX).unlink()
    analyse(results, tmp_path / "a")
    assert sorted(reads) == sorted(map(str, results.rglob("predictions.npz"))) and len(reads) > 40


def test_a_changed_run_is_read_again_alone(results, first, tmp_path, reads):
    before = first
    changed = sorted(results.rglob("predictions.npz"))[3]
    st = os.stat(changed)
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same content, a newer time: read again
    reads.clear()
    assert analyse(results, tmp_path / "b") == before
    assert reads == [str(changed)]
    reads.clear()
    analyse(results, tmp_path / "c")
    assert reads == []  # ... and indexed again


@pytest.mark.parametrize("damage", ["garbage", "truncated", "inconsistent", "pickled"])
def test_a_damaged_index_is_ignored_and_rebuilt(results, first, tmp_path, reads, damage):
    before = first
    index = results / INDEX
    if damage == "garbage":
        index.write_bytes(b"not an index")
    elif damage == "truncated":
        index.write_bytes(index.read_bytes()[:5000])
    else:
        with np.load(index) as z:
            arrays = dict(z)
        if damage == "inconsistent":  # offsets that no longer fit the bits
            arrays["offsets"] = arrays["offsets"][:-1]
        else:  # an object array: loading it would unpickle, which the index never does
            arrays["entry_error"] = np.array([{"x": 1}] * len(arrays["entry_error"]), dtype=object)
        with open(index, "wb") as f:
            np.savez(f, **arrays)
    assert not PredictionIndex(results).loaded
    reads.clear()
    assert analyse(results, tmp_path / "b") == before
    assert len(reads) == n_files(results)
    assert PredictionIndex(results).loaded  # rebuilt


def test_index_round_trip_keeps_bits_fingerprints_and_errors(tmp_path):
    run = tmp_path / "runs" / "r0"
    run.mkdir(parents=True)
    f = run / "predictions.npz"
    f.write_bytes(b"x")
    st = stamp(f)
    correct = np.random.default_rng(0).random(1001) < 0.7
    ix = PredictionIndex(tmp_path)
    ix.put(f, "", st, correct)
    ix.put(f, "imagenet_a", st, correct[:17], "sha256:abc")
    ix.put(f, "imagenet_r", st, None, error=KeyError("pred__imagenet_r"))
    ix.put(f, "imagenet_c", st, None, error=OSError("transient"))  # not from the content: not kept
    ix.save()
    again = PredictionIndex(tmp_path)
    assert again.loaded
    got, fp = again.get(f, "", st).value()
    assert got.dtype == bool and np.array_equal(got, correct) and fp == ""
    got, fp = again.get(f, "imagenet_a", st).value()
    assert np.array_equal(got, correct[:17]) and fp == "sha256:abc"
    with pytest.raises(KeyError):
        again.get(f, "imagenet_r", st).value()
    assert again.get(f, "imagenet_c", st) is None
    assert again.get(f, "", (st[0], st[1] + 1)) is None  # another modification time: not this file's entry
    assert again.key(tmp_path.parent / "elsewhere" / "predictions.npz") is None
    f.unlink()  # a run that is gone leaves the index when it is next written
    other = run / "other.npz"
    other.touch()
    again.put(other, "", stamp(other), correct)
    again.save()
    assert [k for k in PredictionIndex(tmp_path).files] == ["runs/r0/other.npz"]


def test_a_malformed_predictions_file_gives_a_reason_not_a_crash(tmp_path):
    bad = tmp_path / "predictions.npz"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ValueError):
        prediction_index.read_correct(bad)
    store = stats.Predictions([tmp_path])
    with pytest.raises(ValueError):
        store.correct(str(tmp_path / "record.json"), "predictions.npz")


class InlinePool:
    """An executor that runs each job in this process when it is submitted: stands in for analyze.py's pool."""

    def __init__(self, *args, **kwargs):
        pass

    def submit(self, fn, *args):
        from concurrent.futures import Future

        f = Future()
        f.set_result(fn(*args))
        return f

    def shutdown(self, **kwargs):
        pass


def test_figure_workers_start_only_when_a_figure_is_drawn(results, tmp_path, monkeypatch):
    """analyze.py's workers fork at the first figure to draw (cli.Workers): none on a run whose figures are
    all unchanged (here an executor that draws in this process stands in for the pool, and counts)."""
    started = []

    class Counting(InlinePool):
        def __init__(self, *args, **kwargs):
            started.append(1)

    monkeypatch.setattr(cli, "ProcessPoolExecutor", Counting)
    argv = [str(results), "--out", str(tmp_path), "--quiet", "--formats", "csv,png", "--jobs", "2", "--no-published"]
    assert cli.main(argv) == 0 and len(started) == 1
    assert any(p.suffix == ".png" for p in tmp_path.iterdir())
    assert cli.main(argv) == 0 and len(started) == 1  # every figure unchanged: read back, no worker started
