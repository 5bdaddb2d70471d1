"""Issue 32: files in a shared results folder or data root never run code. analyze.py's statistics cache is
JSON (bench/analysis/stats_cache.py); CIFAR-100's python pickles are read by a restricted unpickler."""
import json
import pickle

import numpy as np
import pandas as pd
import pytest

from bench.analysis import cli, stats, stats_cache
from conftest import run_cli
from test_stats import sweep

CACHE = "mini_val.json"  # the mini benchmark's val-protocol table: the one table `sweep` gives


class _Planted:
    """What an attacker plants: unpickling it writes a marker file (os.system would run any command)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return pathlib.Path.write_text, (pathlib.Path(self.marker), "unpickled")


def _same(a, b) -> bool:
    """Equal values of the same types all the way down (numpy dtypes and pandas frames included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, pd.DataFrame):
        return a.equals(b) and list(a.index) == list(b.index) and list(a.columns) == list(b.columns)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, stats.TableStats):
        return _same(vars(a), vars(b))
    if isinstance(a, (float, np.floating)) and a != a:
        return b != b
    return a == b


def test_cached_statistics_come_back_with_their_types_and_the_cache_is_read(tmp_path, monkeypatch, capsys):
    results, out = tmp_path / "results", tmp_path / "out"
    sweep(results, n=200)
    computed, loaded = [], []
    table_stats, loads = stats.table_stats, stats_cache.loads
    monkeypatch.setattr(stats, "table_stats", lambda *a, **k: computed.append(table_stats(*a, **k)) or computed[-1])
    monkeypatch.setattr(stats_cache, "loads", lambda *a: loaded.append(loads(*a)) or loaded[-1])
    argv = [str(results), "--out", str(out), "--formats", "csv,md", "--quiet", "--jobs", "1"]
    assert cli.main(argv) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert len(computed) == 1 and loaded == [] and json.loads((out / ".stats" / CACHE).read_text())["digest"]
    assert cli.main(argv) == 0  # nothing changed: read back, not computed
    assert len(computed) == 1 and len(loaded) == 1 and _same(loaded[0], computed[0])
    assert computed[0].significance and computed[0].ranks and computed[0].intervals  # a full table's statistics
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == first
    assert "statistics cache" not in capsys.readouterr().err


@pytest.mark.parametrize("entry", [{"array": "|O", "shape": [1], "data": [1]}, {"scalar": "<U3", "value": "x"},
                                   {"__reduce__": ["os.system", ["true"]]}, {"frame": {}}, {"TableStats": {"x": 1}}])
def test_the_decoder_builds_nothing_but_numbers_containers_and_table_stats(entry):
    with pytest.raises(stats_cache.CacheError):
        stats_cache.decode(entry)
    doc = json.dumps({"format": stats_cache.FORMAT, "digest": "d", "stats": entry}).encode()
    with pytest.raises(stats_cache.CacheError):
        stats_cache.loads(doc, "d")


def _plant(out, marker, content=None):
    """OUT/.stats/ holding `content` under the cache's name (default: a pickle that writes `marker` when
    unpickled) and that pickle under the old cache's name too."""
    planted = pickle.dumps(_Planted(str(marker)))
    (out / ".stats").mkdir(parents=True, exist_ok=True)
    (out / ".stats" / CACHE).write_bytes(planted if content is None else content)
    (out / ".stats" / "mini_val.pkl").write_bytes(planted)  # the old cache's name: never opened


def test_the_planted_payload_does_run_when_unpickled(tmp_path):
    _plant(tmp_path, tmp_path / "marker")
    pickle.loads((tmp_path / ".stats" / CACHE).read_bytes())
    assert (tmp_path / "marker").read_text() == "unpickled"


@pytest.mark.parametrize("kind", ["garbage", "truncated", "foreign JSON"])
def test_a_garbage_truncated_or_foreign_cache_is_recomputed_with_one_warning(tmp_path, kind, capsys):
    results = tmp_path / "results"
    sweep(results, n=200)
    argv = ["--formats", "csv,md", "--quiet", "--jobs", "1"]
    clean, out = tmp_path / "clean", tmp_path / "out"
    assert cli.main([str(results), "--out", str(clean), *argv]) == 0
    content = {"garbage": b"\x00\xff not json \x80" * 40, "truncated": (clean / ".stats" / CACHE).read_bytes()[:300],
               "foreign JSON": json.dumps({"format": "someone else's", "digest": "x"}).encode()}[kind]
    _plant(out, tmp_path / "marker", content)
    capsys.readouterr()
    assert cli.main([str(results), "--out", str(out), *argv]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "statistics cache" in line]
    assert len(warned) == 1 and str(out / ".stats" / CACHE) in warned[0] and "recomputed" in warned[0]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == \
        {p.name: p.read_bytes() for p in clean.iterdir() if p.is_file()}
    assert cli.main([str(results), "--out", str(out), *argv]) == 0  # rewritten: read back in silence
    assert "statistics cache" not in capsys.readouterr().err


@pytest.mark.process
def test_a_planted_pickle_in_the_cache_runs_nothing_and_is_recomputed(tmp_path):
    """analyze.py as a user runs it on a results folder someone else could write to."""
    results = tmp_path / "results"
    sweep(results, n=200)
    argv = ["--formats", "csv,md", "--quiet", "--jobs", "1"]
    clean, out, marker = tmp_path / "clean", tmp_path / "out", tmp_path / "marker"
    assert run_cli("analyze.py", str(results), "--out", str(clean), *argv).returncode == 0
    _plant(out, marker)
    proc = run_cli("analyze.py", str(results), "--out", str(out), *argv)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    warned = [line for line in proc.stderr.splitlines() if "statistics cache" in line]
    assert len(warned) == 1 and str(out / ".stats" / CACHE) in warned[0] and "recomputed" in warned[0], proc.stderr
    tables = {p.name: p.read_bytes() for p in clean.iterdir() if p.is_file()}
    assert len(tables) >= 10 and {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == tables


# --- CIFAR-100's python pickles ------------------------------------------------------------------------

def _cifar(tmp_path, payload=None, protocol=pickle.DEFAULT_PROTOCOL):
    """A cifar-100-python tree (tests/fixtures_data.py), its test file rewritten as the real one is laid out
    (bytes keys, filenames, batch label) at `protocol`, with `payload` added to the dict."""
    from fixtures_data import cifar_tree, config

    cifar_tree(tmp_path / "cifar100", n_train=4, n_test=3)
    path = tmp_path / "cifar100" / "cifar-100-python" / "test"
    with open(path, "rb") as f:
        d = pickle.load(f)
    d = {b"batch_label": b"testing batch 1 of 1", b"fine_labels": d["fine_labels"],
         b"coarse_labels": [0] * len(d["fine_labels"]), b"filenames": [b"a.png"] * len(d["fine_labels"]),
         b"data": d["data"]} | (payload or {})
    path.write_bytes(pickle.dumps(d, protocol=protocol))
    return config("cifar100/cifar100", tmp_path, image_size=16, splits={"trainval": 4, "test": 3}), path


@pytest.mark.parametrize("protocol", [2, pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL])
def test_the_real_cifar_layout_loads_through_the_restricted_unpickler(tmp_path, protocol):
    from bench.data.formats import cifar100_python

    cfg, path = _cifar(tmp_path, protocol=protocol)
    listing = cifar100_python.list_split(cfg, "test")
    with open(path, "rb") as f:
        want = pickle.load(f)[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    assert listing.arrays.dtype == np.uint8 and np.array_equal(listing.arrays, want)
    assert list(listing.labels) == [0, 1, 2]


@pytest.mark.parametrize("planted", ["code", "other object"])
def test_a_cifar_pickle_holding_another_object_is_refused_in_one_line(tmp_path, planted):
    import collections

    from bench.data.errors import DataError
    from bench.data.formats import cifar100_python

    marker = tmp_path / "marker"
    payload = _Planted(str(marker)) if planted == "code" else collections.OrderedDict(a=1)
    cfg, path = _cifar(tmp_path, {b"extra": payload})
    with pytest.raises(DataError) as e:
        cifar100_python.list_split(cfg, "test")
    message = str(e.value)
    assert "\n" not in message and str(path) in message and "refused" in message, message
    assert ("pathlib" if planted == "code" else "collections.OrderedDict") in message
    assert not marker.exists()
