"""What makes analyze.py's first run cheaper keeps every number: the statistics counted on packed bits equal those
on bool arrays, a file's missing robustness target is remembered by the index (never read again), and main leaves
the garbage collector as it found it (docs/speed.md, analyze.py)."""
import gc

import numpy as np
import pytest

from bench.analysis import cli, stats
from bench.analysis.prediction_index import INDEX
from test_analyze import rec
from test_stats import write_run

OPTS = stats.CIOptions()


def runs(rng, n: int, accs) -> list[np.ndarray]:
    """Correlated runs: a shared per-image difficulty, each run right below its accuracy plus its own noise."""
    difficulty = rng.random(n)
    return [difficulty + rng.normal(0, 0.05, n) < a for a in accs]


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1003])
@pytest.mark.parametrize("r", [1, 2, 3, 4])
def test_pattern_counts_on_bits_are_the_bincount_of_the_patterns(n, r):
    cols = runs(np.random.default_rng([n, r]), n, np.linspace(0.3, 0.8, r))
    codes = sum(c.astype(np.int64) << j for j, c in enumerate(cols))
    want = np.bincount(codes, minlength=1 << r)
    got = stats.pattern_counts(np.stack([np.packbits(c) for c in cols]), n)
    assert got.dtype == want.dtype and np.array_equal(got, want)


@pytest.mark.parametrize("r", [1, 2, 5])
def test_draws_on_bits_are_the_draws_on_bool_arrays(r):
    cols = runs(np.random.default_rng(r), 997, np.linspace(0.4, 0.9, r))
    want = stats.image_draws(cols, 200, np.random.default_rng(7))
    got = stats.packed_draws(np.stack([np.packbits(c) for c in cols]), 997, 200, np.random.default_rng(7))
    assert np.array_equal(got, want)  # bit for bit: the same multinomial (or normal) draws


def reference(cells) -> list:
    """The statistics as they were computed on bool arrays (np.mean, the bincount draws, `mcnemar`)."""
    a, b = cells
    out = [[float(c.mean()) for c in x] for x in (a, b)]
    if len(a) == len(b) == 1:
        rng = stats.generator(OPTS.seed, "pair", "x")
        acc = stats.image_draws(a + b, OPTS.resamples, rng)
        out += [np.round(acc[:, 0] - acc[:, 1], 9), stats.mcnemar(a[0], b[0])]
    return out + [float(np.mean(a[0] != b[0]))]


@pytest.mark.parametrize("seeds", [(1, 1), (3, 2)])
def test_a_cell_of_bits_gives_the_numbers_of_its_bool_arrays(seeds):
    rng = np.random.default_rng(sum(seeds))
    cols = runs(rng, 2001, rng.uniform(0.5, 0.9, sum(seeds)))
    a, b = cols[:seeds[0]], cols[seeds[0]:]
    packed = [stats.Cell(rows=[np.packbits(c) for c in x], n=2001, fingerprint="fp",
                         accuracies=[int(np.count_nonzero(c)) / 2001 for c in x]) for x in (a, b)]
    by_hand = [stats.Cell(x, "fp") for x in (a, b)]
    want = reference((a, b))
    for ca, cb in (packed, by_hand):
        assert [ca.accuracies(), cb.accuracies()] == want[:2]
        assert all(np.array_equal(u, v) for u, v in zip(ca.correct + cb.correct, a + b))  # unpacked on request
        got = stats.compare_cells(ca, cb, OPTS, "x")
        if seeds == (1, 1):
            assert np.array_equal(got.draws, want[2]) and got.p_value == want[3]
        assert stats.discordance(ca, cb) == want[-1]
    for one, two in zip(*[[stats.cell_estimate(c, OPTS, "x", str(i)) for i, c in enumerate(cells)]
                          for cells in (packed, by_hand)]):
        assert one.value == two.value and one.parts == two.parts
        assert (one.draws is None and two.draws is None) or np.array_equal(one.draws, two.draws)


def test_a_missing_robustness_target_is_kept_in_the_index(tmp_path):
    """A file without the target's arrays gives its KeyError once; the index keeps it, so the next analysis reads
    nothing (every analysis of an ImageNet sweep used to read those files again)."""
    path = write_run(tmp_path, rec("full", "imagenet/imagenet", 0.0), np.arange(50) % 3 == 0)
    key = (str(path), "predictions.npz", "imagenet_a")
    first = stats.Predictions([tmp_path])
    first.prefetch([key, key[:2] + ("",)])
    assert first.reads == 2
    with pytest.raises(KeyError):
        first.packed(*key)
    assert first.save() == [] and (tmp_path / INDEX).is_file()
    again = stats.Predictions([tmp_path])
    again.prefetch([key, key[:2] + ("",)])
    assert again.reads == 0
    with pytest.raises(KeyError):
        again.packed(*key)
    bits, n = again.packed(*key[:2], "")
    assert n == 50 and np.array_equal(again.correct(*key[:2]), np.arange(50) % 3 == 0)
    assert np.array_equal(bits, np.packbits(np.arange(50) % 3 == 0))


def test_main_leaves_the_collector_as_it_found_it(tmp_path, monkeypatch):
    """In a process with nothing frozen (analyze.py's own), main freezes the records, and what the figure workers
    inherit, and unfreezes them on the way out; where the caller froze its own objects (these test workers do,
    tests/conftest.py), those stay frozen and main freezes nothing. The workers draw in this process here."""
    from test_prediction_index import InlinePool

    write_run(tmp_path, rec("full", "vtab/cifar", 0.0), np.arange(40) % 2 == 0)
    argv = [str(tmp_path), "--out", str(tmp_path / "out"), "--quiet", "--formats", "csv,png", "--jobs", "2",
            "--no-published"]
    monkeypatch.setattr(cli, "ProcessPoolExecutor", InlinePool)
    froze, freeze = [], gc.freeze
    monkeypatch.setattr(gc, "freeze", lambda: (froze.append(1), freeze())[1])
    before = gc.get_threshold()
    assert gc.get_freeze_count() > 0  # the conftest hook froze what the collection left
    gc.unfreeze()
    try:
        assert cli.main(argv) == 0
        # frozen twice (the records, then before the workers start), all of it undone
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0 and froze == [1, 1]
    finally:
        gc.collect()
        freeze()  # frozen again, with what the earlier tests left alive
    frozen = gc.get_freeze_count()
    assert cli.main(["--redraw", *argv]) == 0
    # still frozen (less what died meanwhile: a frozen object freed by its reference count leaves the count), and
    # main froze nothing of its own
    assert gc.get_threshold() == before and 0 < gc.get_freeze_count() <= frozen and froze == [1, 1]



def test_a_figure_started_early_is_drawn_once_with_the_inputs_it_is_placed_with(tmp_path, monkeypatch):
    """`Outputs.early` queues a figure before its place in the report; `figure` with the same inputs takes that
    job, with other inputs waits for it and draws again (the last files are the placed inputs')."""
    from bench.analysis import plots
    from test_prediction_index import InlinePool

    drawn = []

    def render(kind, args, stem, formats, write):
        drawn.append(args)
        return {"png": repr(args).encode()}

    monkeypatch.setattr(plots, "render", render)
    out = cli.Outputs(tmp_path, ("csv", "png"), quiet=True, pool=InlinePool())
    out.early("same", "cost_figure", ("a",))
    out.figure("same", "cost_figure", ("a",), "caption")
    assert drawn == [("a",)]
    out.early("changed", "cost_figure", ("b",))
    out.figure("changed", "cost_figure", ("c",), "caption")
    assert drawn == [("a",), ("b",), ("c",)] and not out.started
    out.finish()
    assert out.images["same"]["png"] == b"('a',)" and out.images["changed"]["png"] == b"('c',)"
    assert set(out.digests) == {"same", "changed"}


def test_tables_are_written_in_order_by_the_writer_and_a_failed_write_fails_finish(tmp_path):
    import pandas as pd

    out = cli.Outputs(tmp_path, ("csv", "md"), quiet=True)
    for k in range(20):
        out.frame("t", pd.DataFrame({"k": [k]}), index=False)  # the same file twenty times: the last one stays
    out.table("t", "title", ["a"], [["1"]])
    out.finish()
    assert (tmp_path / "t.csv").read_text() == "k\n19\n" and (tmp_path / "t.md").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (tmp_path / "file").write_text("")
    out = cli.Outputs(tmp_path / "file", ("csv",), quiet=True)
    out.frame("t", pd.DataFrame({"k": [1]}))
    with pytest.raises(OSError):
        out.finish()
