"""Uncertainty for the tables: bootstrap intervals, paired tests, ranks across tasks (numpy/scipy, torch-free).

A run's `predictions.npz` (beside its record) holds the predicted and true class of every test
image in the listing's order, and `test_fingerprint` names that listing. Everything here works
on the per-image correctness those give (`pred == target`).

Bootstrap over test images, exactly and cheaply: resampling n images with replacement only
changes how many times each *pattern* of correctness occurs (one run: correct / wrong; two runs
on the same images: both, only A, only B, neither). So a resample is a multinomial draw of the
pattern counts, the same distribution as drawing an n-long index vector, at a cost that does
not grow with n. Where the runs of one cell or comparison show more than `EXACT_MAX_PATTERNS`
patterns (several seeds on each side), the image-level resampling is drawn from the normal
distribution with the bootstrap's exact mean and covariance (the runs' per-image covariance
over n): at the test-set sizes here (hundreds of images and more) the two agree closely, and the
exact draw would cost B x patterns. That bootstrap serves one seed per side, where the
question is about the runs themselves ("these two trained models on these test images").

Several seeds ask about the methods, and resampling a handful of seeds does not answer it: drawn
with replacement, S seeds shrink the between-seed variance by (S-1)/S, and a normal reference
ignores that the variance is estimated from S-1 degrees of freedom (issue 31 measured 13 % of null
comparisons significant at 5 %). So with two or more seeds on each side the cell and the
difference are treated as the crossed random-effects design they are (seeds x test images, the
images shared by every run): the variance of a mean over seeds is the between-seed sample variance
of the seeds' accuracies over S (divisor S-1), plus the test set's share, the image-level variance
of the seed-averaged per-image correctness less the seed-by-image interaction already inside the
seed term (ANOVA moment estimators of the variance components: Searle, Casella & McCulloch,
"Variance Components", 1992, ch. 4). A difference of two methods adds both sides' seed terms
(their seed variances may differ: linear probing barely moves between seeds, full fine-tuning
does) and the paired image term, and is referred to a t distribution with Welch-Satterthwaite
degrees of freedom (Welch 1947, Satterthwaite 1946). A cell's interval scales its seed part and its
image part each by its own t quantile (Banerjee 1961: `banerjee_interval`). Everything comes from each run's accuracy and
the runs' per-image covariance (`moments`). One seed on one side and several on the other leaves
that side's seed variance unknown: no test (`MIN_SEEDS`, docs/statistics.md says why).

Determinism: every cell and comparison gets its own generator seeded from `--ci-seed` and the
cell's names, so a table does not depend on which other cells were selected or their order.
"""
import functools
import math
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from bench.analysis.prediction_index import PredictionIndex, read_correct, stamp

CI_METHODS = ("bootstrap", "none")
VERDICTS = ("better", "worse", "not distinguishable")
EXACT_MAX_PATTERNS = 16  # above this many correctness patterns: the normal draw (module docstring)
PACKED_MAX_RUNS = 4  # `packed_draws` counts up to 2^4 patterns on bits; more runs are unpacked
MIN_SEEDS = 2  # seeds per side a test of methods needs (one seed on both sides: the runs are compared instead)
QUESTIONS = ("runs", "methods")  # what a comparison answers: these two trained models, or the two methods over seeds
NOT_COMPARABLE = "‡"  # a leaderboard cell scored on other test images than its baseline: no verdict
POWER = 0.8  # the power at which `detectable_difference` counts a difference as detectable
PREDICTIONS_METRIC = "test_top1"  # the record field a run's predictions.npz reproduces


@dataclass(frozen=True)
class CIOptions:
    """How analyze.py computes intervals: `method` (bootstrap / none), level, generator seed, resamples."""
    method: str = "bootstrap"
    level: float = 0.95
    seed: int = 0
    resamples: int = 1000

    @property
    def alpha(self) -> float:
        return 1.0 - self.level

    def note(self) -> str:
        if self.method == "none":
            return "Intervals: off (--ci none)."
        return (f"[low, high]: {self.level:.0%} interval. One seed: percentile bootstrap over the test images "
                f"({self.resamples} resamples, generator seed {self.seed}, --ci-seed): the run's own accuracy. Several "
                "seeds: the method's, mean over seeds ± sqrt(t² s²/S + t'² images' share), s² the between-seed "
                "variance (divisor S-1) with t on S-1 degrees of freedom (docs/statistics.md).")


# --- per-run predictions -------------------------------------------------------------------------

class Cell:
    """The usable per-image correctness of one leaderboard cell's seeds, or why there is none.

    Kept as bits (each seed's correctness packed 8 images a byte, `np.packbits`, as the index of
    predictions holds it): every statistic here counts on them (`np.bitwise_count`), so the 200
    million images of a large results folder are never unpacked to bytes. `cell_predictions` builds
    a cell from the bits; `Cell(correct, fingerprint)` from one bool array per seed (tests, scripts).
    """

    def __init__(self, correct=(), fingerprint: str = "", reason: str = "", *, rows=(), n: int = 0,
                 accuracies=()):
        self._correct = list(correct)  # one bool array per seed (given, or unpacked on request)
        self.fingerprint, self.reason = fingerprint, reason
        self._rows = list(rows) or [np.packbits(np.asarray(c, dtype=bool)) for c in self._correct]  # (m,) per seed
        self._n = n or (len(self._correct[0]) if self._correct else 0)
        self._accuracies = list(accuracies)
        self._packed: np.ndarray | None = None
        self._both: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"Cell(seeds={self.seeds}, n={self.n}, fingerprint={self.fingerprint!r}, reason={self.reason!r})"

    @property
    def seeds(self) -> int:
        return len(self._rows)

    @property
    def n(self) -> int:
        return self._n

    @property
    def correct(self) -> list:
        """One bool array per seed (unpacked from the bits once, where the cell was built from them)."""
        if len(self._correct) != self.seeds:
            self._correct = [np.unpackbits(r, count=self.n).view(bool) for r in self._rows]
        return self._correct

    def add(self, bits: np.ndarray, n: int, accuracy: float, fingerprint: str) -> None:
        """One more seed: its packed correctness over `n` images and its accuracy (fraction)."""
        self._rows.append(bits)
        self._accuracies.append(accuracy)
        self._n, self.fingerprint = n, fingerprint
        self._packed = self._both = None

    def packed(self) -> np.ndarray:
        """(S, ceil(n / 8)) the seeds' correctness as bits, stacked once: a baseline meets every other method."""
        if self._packed is None:
            self._packed = np.stack(self._rows)
        return self._packed

    def both(self) -> np.ndarray:
        """(S, S) images both seeds got right (`moments`' counts; the diagonal: each seed's), computed once."""
        if self._both is None:
            self._both = _both(self.packed(), self.packed())
        return self._both

    def accuracies(self) -> list:
        """Each seed's accuracy (fraction), computed once: every comparison asks for the baseline's again."""
        if len(self._accuracies) != self.seeds:
            self._accuracies = [int(k) / self.n for k in np.diagonal(self.both())]  # = the bool array's mean
        return self._accuracies


class Predictions:
    """Reads each run's predictions.npz at most once, when a table first needs it.

    Where a results folder's index (bench/analysis/prediction_index.py) holds a file as it is now,
    its correctness comes from there, not from the file; files it lacks are read several at once
    (`prefetch`: threads, since inflating releases the GIL) and added to it, and `save` writes the
    indexes back. The correctness is kept packed (`packed`), as the index holds it: `correct`
    unpacks one run's on request. `reads` counts the files read (tests check that a second analysis
    reads none).
    """

    def __init__(self, roots=(), jobs: int | None = None):
        self._packed: dict[tuple, tuple[np.ndarray, int]] = {}  # key -> (`np.packbits` of the correctness, images)
        self._fingerprints: dict[tuple, str] = {}
        self._errors: dict[tuple, Exception] = {}
        self.indexes = [PredictionIndex(r) for r in dict.fromkeys(os.path.abspath(r) for r in roots)]
        self.jobs = jobs or min(4, os.cpu_count() or 1)
        self.reads = 0

    def _locate(self, path: str) -> tuple[PredictionIndex | None, str | None]:
        """The index of the results folder holding `path`, and `path` relative to it (None, None: none does)."""
        for ix in self.indexes:
            rel = ix.key(path)
            if rel is not None:
                return ix, rel
        return None, None

    @staticmethod
    def _read(key: tuple) -> tuple:
        """(stamp, correct, fingerprint, error) of one (record_path, name, target); the stamp taken first, and
        kept with an error the file's content gave (a missing target), which the index then remembers."""
        path = os.path.join(os.path.dirname(key[0]), key[1])
        st = None
        try:
            st = stamp(path)
            return (st, *read_correct(path, key[2]), None)
        except (OSError, ValueError, KeyError) as e:
            return (st, None, "", e)

    def prefetch(self, keys) -> None:
        """Make the (record_path, name, target) `keys` available: from an index where the file is unchanged,
        else read (in threads) and added to its folder's index."""
        todo = []
        for key in dict.fromkeys(keys):
            if key in self._packed or key in self._errors:
                continue
            path = os.path.join(os.path.dirname(key[0]), key[1])
            ix, rel = self._locate(path)
            try:
                entry = ix.get(path, key[2], stamp(path), rel) if ix is not None else None
            except OSError:
                entry = None
            if entry is None:
                todo.append(key)
                continue
            try:
                entry.check()
            except (ValueError, KeyError) as e:
                self._errors[key] = e
                continue
            self._packed[key] = entry.bits, entry.n
            if key[2]:
                self._fingerprints[key] = entry.fingerprint
        if not todo:
            return
        if len(todo) > 1 and self.jobs > 1:
            with ThreadPoolExecutor(self.jobs) as pool:
                results = list(pool.map(self._read, todo))
        else:
            results = [self._read(k) for k in todo]
        for key, (st, correct, fp, error) in zip(todo, results):
            self.reads += 1
            if error is None:
                if key[2]:  # a target's listing is named only here (the record's test_fingerprint is the test split's)
                    self._fingerprints[key] = fp
            else:
                self._errors[key] = error
            ix, rel = self._locate(os.path.join(os.path.dirname(key[0]), key[1]))
            if ix is not None and st is not None:
                ix.put(rel, key[2], st, correct, fp, error, relative=True)
                if error is None:  # the bits the index now holds: packed once
                    self._packed[key] = ix.get(None, key[2], st, rel).bits, len(correct)
            if error is None and key not in self._packed:
                self._packed[key] = np.packbits(correct), len(correct)

    def packed(self, record_path: str, name: str, target: str = "") -> tuple[np.ndarray, int]:
        """(`np.packbits` of `correct`'s array, its length): what the statistics count on.

        Raises OSError, ValueError or KeyError on a bad file (`prediction_index.read_correct`).
        """
        key = (record_path, name, target)
        if key not in self._packed:
            self.prefetch([key])
            if key in self._errors:
                raise self._errors[key]
        return self._packed[key]

    def correct(self, record_path: str, name: str, target: str = "") -> np.ndarray:
        """Bool array `pred == target` of one run (`target`: a robustness target's name, "" the test split).

        Raises OSError, ValueError or KeyError on a bad file (`prediction_index.read_correct`).
        """
        bits, n = self.packed(record_path, name, target)
        return np.unpackbits(bits, count=n).view(bool)

    def fingerprint(self, record_path: str, name: str, target: str) -> str:
        """The listing fingerprint of a robustness or domain-shift target (after `packed` read it)."""
        return self._fingerprints[(record_path, name, target)]

    def save(self) -> list[str]:
        """Write the indexes that changed; returns a line for each that could not be written."""
        problems = []
        for ix in self.indexes:
            try:
                ix.save()
            except OSError as e:
                problems.append(f"{ix.path}: {e}")
        return problems


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and v != v)


def prediction_keys(runs: list[dict], metric: str = PREDICTIONS_METRIC) -> list[tuple]:
    """The (record_path, name, target) of the files `cell_predictions` may read for a cell's runs, for
    `Predictions.prefetch` (its checks, without reading)."""
    seen, keys = set(), []
    for r in sorted(runs, key=lambda r: (r["seed"], str(r["path"]))):
        if r["seed"] in seen:
            continue
        seen.add(r["seed"])
        target = r.get("predictions_target", "" if metric == PREDICTIONS_METRIC else None)
        name, fp = r.get("predictions"), r.get("test_fingerprint")
        if isinstance(target, str) and _present(name) and _present(fp) and r.get("predictions_complete") is not False:
            keys.append((r["path"], str(name), target))
    return keys


def cell_predictions(runs: list[dict], store: Predictions, metric: str = PREDICTIONS_METRIC) -> Cell:
    """The correctness vectors of a cell's runs (one per seed, the first record of a repeated seed).

    `runs` are the cell's completed records as dicts (`path`, `seed`, `test_fingerprint`,
    `predictions`, `predictions_complete`, `metric`, and for a robustness or domain-shift column
    `predictions_target`, the target whose arrays give `metric`, with `predictions_reason` where none
    does). A cell gets no interval, with the reason, when any seed lacks usable predictions: an old
    record without them, an incomplete or unreadable file, one whose accuracy is not the record's,
    or seeds on different listings.
    """
    seen, cell = set(), Cell()
    for r in sorted(runs, key=lambda r: (r["seed"], str(r["path"]))):
        if r["seed"] in seen:
            continue
        seen.add(r["seed"])
        target = r.get("predictions_target", "" if metric == PREDICTIONS_METRIC else None)
        if not isinstance(target, str):
            reason = r.get("predictions_reason")
            return Cell(reason=reason if isinstance(reason, str) and reason
                        else f"predictions score {PREDICTIONS_METRIC}, not {metric}")
        name, fp = r.get("predictions"), r.get("test_fingerprint")
        if not _present(name) or not _present(fp):
            return Cell(reason="no predictions (older record)")
        if r.get("predictions_complete") is False:
            return Cell(reason="predictions incomplete (unreadable test images skipped)")
        try:
            bits, n = store.packed(r["path"], str(name), target)
            if target:
                fp = store.fingerprint(r["path"], str(name), target)
        except (OSError, ValueError, KeyError) as e:
            if isinstance(e, KeyError) and target:
                return Cell(reason=f"no predictions for {target} (older record)")
            return Cell(reason=f"predictions unreadable ({type(e).__name__})")
        # the share of images right, counted on the bits: the bool array's mean, the same float
        value, accuracy = r.get(metric), int(np.bitwise_count(bits).sum(dtype=np.int64)) / n if n else math.nan
        if _present(value) and abs(100.0 * accuracy - float(value)) > 0.01:
            return Cell(reason=f"predictions disagree with the record's {metric}")
        if cell.seeds and (fp != cell.fingerprint or n != cell.n):
            return Cell(reason="seeds scored on different test listings")
        cell.add(bits, n, accuracy, str(fp))
    return cell


# --- resampling ------------------------------------------------------------------------------------

def generator(seed: int, *names: str) -> np.random.Generator:
    """A generator for one cell or comparison: `seed` and a stable hash of its names (not Python's hash)."""
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(names).encode())])


def image_draws(columns: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Accuracy (%) of each run on `resamples` bootstrap resamples of the images: (resamples, runs).

    Every run is resampled on the same images (the columns share one listing).
    """
    n, r = len(columns[0]), len(columns)
    if r <= 16:
        codes = np.zeros(n, np.uint16)  # (n,) each image's pattern: bit j set where run j is right
        for j, col in enumerate(columns):
            codes |= col.astype(np.uint16) << np.uint16(j)
        return _pattern_draws(np.bincount(codes), r, n, resamples, rng)
    x = np.column_stack(columns).astype(np.float32)  # (n, R)
    mean = x.mean(axis=0, dtype=np.float64)
    second = (x.T @ x).astype(np.float64) / n  # sums of 0/1 below 2^24: exact in float32
    return _normal_draws(mean, second, n, resamples, rng)


def packed_draws(packed: np.ndarray, n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`image_draws` of the runs whose correctness over `n` images is `packed` (R, ceil(n / 8)), the same
    numbers: with up to `PACKED_MAX_RUNS` runs the pattern counts come from the bits (`pattern_counts`)."""
    if len(packed) > PACKED_MAX_RUNS:
        return image_draws([np.unpackbits(row, count=n).view(bool) for row in packed], resamples, rng)
    return _pattern_draws(pattern_counts(packed, n), len(packed), n, resamples, rng)


def pattern_counts(packed: np.ndarray, n: int) -> np.ndarray:
    """(2^R,) how many of the `n` images show each correctness pattern (bit j: run j right), from the runs'
    packed bits (R, ceil(n / 8)): `np.bincount` of the patterns, trailing zeros kept."""
    r = len(packed)
    counts = np.zeros(1 << r, np.int64)
    for code in range(1, 1 << r):  # code 0 (every run wrong) is the rest: the padding bits of ~bits are set
        sel = np.bitwise_and.reduce([packed[j] if code >> j & 1 else ~packed[j] for j in range(r)])
        counts[code] = np.bitwise_count(sel).sum(dtype=np.int64)
    counts[0] = n - counts[1:].sum()
    return counts


def _pattern_draws(counts: np.ndarray, r: int, n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`image_draws` from the images' pattern counts (`np.bincount` of the patterns of `r` runs)."""
    patterns = np.flatnonzero(counts)
    counts = counts[patterns]
    bits = ((patterns[:, None] >> np.arange(r)) & 1).astype(np.float64)  # (P, R)
    if len(patterns) <= EXACT_MAX_PATTERNS:
        k = rng.multinomial(n, counts / n, size=resamples)  # (B, P): how often each pattern is drawn
        return 100.0 * (k @ bits) / n
    return _normal_draws(counts @ bits / n, bits.T @ (bits * counts[:, None]) / n, n, resamples, rng)


def _normal_draws(mean, second, n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    cov = (second - np.outer(mean, mean)) / n  # the covariance of the bootstrap means
    return 100.0 * rng.multivariate_normal(mean, cov, size=resamples, method="eigh")


def seed_means(acc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(B, S) per-seed accuracies -> (B,) means over seeds drawn with replacement (S = 1: the column)."""
    b, s = acc.shape
    if s == 1:
        return acc[:, 0]
    pick = rng.integers(0, s, size=(b, s))
    return np.take_along_axis(acc, pick, axis=1).mean(axis=1)


def cell_draws(cell: Cell, opts: CIOptions, *names: str) -> np.ndarray:
    """(B,) bootstrap accuracies of one cell (mean over its seeds)."""
    rng = generator(opts.seed, "cell", *names)
    return seed_means(packed_draws(cell.packed(), cell.n, opts.resamples, rng), rng)


def interval(draws: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap draws."""
    lo, hi = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


# --- several seeds: seeds x images, the variance components ----------------------------------------------

def moments(columns: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Each run's accuracy (R,) and the runs' second moments over the images (R, R), as fractions.

    All that the seed-aware statistics read: they are quadratic forms in the per-image correctness.
    Counted on bits (each run's correctness packed 8 images a byte, `np.bitwise_count` of the ANDs):
    exact integers, the same numbers as a float matmul of the 0/1 columns, a tenth of its time.
    """
    packed = _pack(columns)
    return _moments(_both(packed, packed), len(columns[0]))


def _pack(columns: list[np.ndarray]) -> np.ndarray:
    return np.stack([np.packbits(np.asarray(c, dtype=bool)) for c in columns])  # (R, ceil(n / 8))


def _both(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Ra, Rb) images both runs got right, from packed bits (Ra, m) and (Rb, m)."""
    return np.bitwise_count(a[:, None, :] & b[None, :, :]).sum(axis=-1, dtype=np.int64)


def _moments(both: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.diagonal(both) / n, both / n


def pair_moments(a: "Cell", b: "Cell") -> tuple[np.ndarray, np.ndarray]:
    """`moments(a.correct + b.correct)` from each cell's own counts (`Cell.both`, kept) and the cross counts:
    the same integers, a quarter of the bit counting where both sides have as many seeds."""
    cross = _both(a.packed(), b.packed())
    both = np.block([[a.both(), cross], [cross.T, b.both()]])
    return _moments(both, a.n)


def _side(mean, cov, n, idx):
    """One side's (runs `idx`) seed term s^2/S (its sample variance over seeds, divisor S-1) and the
    seed-by-image interaction's share of the image term, MS_int / (S n); batched over leading axes."""
    s = len(idx)
    m = mean[..., idx]
    c = cov[..., idx, :][..., :, idx]
    if s < 2:
        return m.mean(axis=-1), np.full(m.shape[:-1], np.nan), np.zeros(m.shape[:-1])
    ms_int = (np.trace(c, axis1=-2, axis2=-1) - c.sum(axis=(-2, -1)) / s) / (s - 1)  # per image
    return m.mean(axis=-1), m.var(axis=-1, ddof=1) / s, ms_int / (s * n)


def seed_aware(mean, second, n, sa: int) -> dict[str, np.ndarray]:
    """The mean over seeds (sb = 0: one cell) or the difference of two sides' means, with its variance and
    Welch-Satterthwaite degrees of freedom; in points and points^2. Batched over leading axes (the
    simulations in tests/test_stats_seeds.py call it on thousands of comparisons at once).

    Args:
        mean: (..., R) each run's accuracy (fraction); the first `sa` runs are side A, the rest side B.
        second: (..., R, R) the runs' second moments over the test images (`moments`).
        n: test images (scalar or (...)).
    Returns:
        value, var, df, and the parts: seed_a, seed_b (s^2/S of each side; NaN for one seed), image
        (the test set's share, the interaction inside the seed terms taken out, never below 0).
    """
    mean, second = np.asarray(mean, float), np.asarray(second, float)
    n = np.asarray(n, float)
    r = mean.shape[-1]
    cov = (second - mean[..., :, None] * mean[..., None, :]) * (n / (n - 1))[..., None, None]
    a, b = list(range(sa)), list(range(sa, r))
    ma, ua, ea = _side(mean, cov, n, a)
    w = np.zeros(r)
    w[a] = 1.0 / len(a)
    if b:
        mb, ub, eb = _side(mean, cov, n, b)
        w[b] = -1.0 / len(b)
    else:
        mb, ub, eb = 0.0, np.zeros_like(ua), np.zeros_like(ea)
    image = np.maximum(np.einsum("...i,...ij,j->...", np.broadcast_to(w, mean.shape), cov, w) / n - ea - eb, 0.0)
    var = ua + ub + image
    with np.errstate(divide="ignore", invalid="ignore"):
        den = ua ** 2 / max(len(a) - 1, 1) + ub ** 2 / max(len(b) - 1, 1) + image ** 2 / (n - 1)
        df = np.where(den > 0, var ** 2 / den, np.inf)
    scale = 100.0 ** 2
    return {"value": 100.0 * (ma - mb), "var": scale * var, "df": df, "seed_a": scale * ua, "seed_b": scale * ub,
            "image": scale * image}


def t_p(value, var, df):
    """Two-sided p-value of `value` against 0 with standard error sqrt(var) on `df` degrees of freedom
    (`scipy.stats.t.sf`'s numbers, from the ufunc `scipy.special.stdtr`; arrays too). Zero variance:
    1 for a zero difference, else 0."""
    from scipy.special import stdtr

    value, var, df = np.asarray(value, float), np.asarray(var, float), np.asarray(df, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.abs(value) / np.sqrt(var)
        p = 2 * stdtr(df, -t)
    return np.where(var > 0, p, np.where(value == 0, 1.0, 0.0))


def t_interval(value, var, df, level: float):
    """value ± t_{df, (1+level)/2} sqrt(var) (`scipy.stats.t.interval`'s numbers; arrays too)."""
    from scipy.special import stdtrit

    var = np.asarray(var, float)
    half = np.where(var > 0, stdtrit(df, 0.5 + level / 2) * np.sqrt(np.maximum(var, 0.0)), 0.0)
    if half.ndim == 0:
        return float(value - half), float(value + half)
    return value - half, value + half


def _t_quantile(df, q):
    """`scipy.special.stdtrit(df, q)`; a scalar's remembered (`_stdtrit`): the cells' and averages' intervals
    ask for a handful of degrees of freedom (seeds - 1, images - 1) thousands of times."""
    if np.ndim(df) == 0 and np.ndim(q) == 0:
        return _stdtrit(float(df), float(q))
    from scipy.special import stdtrit

    return stdtrit(df, q)


@functools.lru_cache(maxsize=4096)
def _stdtrit(df: float, q: float) -> float:
    from scipy.special import stdtrit

    return stdtrit(df, q)


def banerjee_interval(value, parts, level: float):
    """value ± sqrt(sum of t_{df_i, (1+level)/2}^2 var_i) over independent variance estimates (var_i, df_i)
    (Banerjee 1961): each part scaled by its own t quantile, so the coverage is at least `level` whatever the
    parts' true sizes. A cell's interval: Satterthwaite's single df undercovers (87 % at two seeds, measured
    in tests/test_stats_seeds.py) where the seeds' variance comes out near zero by chance. Arrays too."""
    half = np.sqrt(sum(np.where(np.asarray(v, float) > 0, _t_quantile(d, 0.5 + level / 2) ** 2 * np.maximum(v, 0), 0.0)
                       for v, d in parts))
    if np.ndim(half) == 0:
        return float(value - half), float(value + half)
    return value - half, value + half


def satterthwaite(parts: list[tuple[float, float]]) -> tuple[float, float]:
    """(variance, degrees of freedom) of a sum of independent variance estimates (var_i, df_i) (Satterthwaite 1946)."""
    var = float(sum(v for v, _ in parts))
    den = sum(v * v / d for v, d in parts if v > 0 and d < math.inf)
    return var, (var * var / den if den > 0 else math.inf)


@dataclass
class Estimate:
    """A cell's accuracy or a group's mean: bootstrap `draws` (one seed per cell), or independent variance
    parts (var, df) (several seeds: the seeds' and the test images'; an average: all its members')."""
    value: float
    draws: np.ndarray | None = None
    parts: tuple = ()

    def interval(self, level: float) -> tuple[float, float]:
        if self.draws is not None:
            return interval(self.draws, level)
        return banerjee_interval(self.value, self.parts, level)

    def variance_parts(self) -> tuple:
        """The parts; a bootstrap's variance counts as known (df infinite)."""
        return ((float(np.var(self.draws)), math.inf),) if self.draws is not None else self.parts


def cell_estimate(cell: Cell, opts: CIOptions, *names: str) -> Estimate:
    """One cell: one seed, the bootstrap over its images; several, the seed-aware mean (`seed_aware`)."""
    if cell.seeds == 1:
        draws = cell_draws(cell, opts, *names)
        return Estimate(float(100.0 * cell.accuracies()[0]), draws)
    mean, second = _moments(cell.both(), cell.n)
    s = cell.seeds
    r = {k: float(v) for k, v in seed_aware(mean, second, cell.n, s).items()}
    return Estimate(r["value"], None, ((r["seed_a"], s - 1), (r["image"], cell.n - 1)))


def average(estimates: list[Estimate]) -> Estimate:
    """The mean of independent estimates (tasks, or a group's means): draws averaged where all are bootstrap
    draws, else every member's variance parts over the count squared."""
    k = len(estimates)
    value = float(np.mean([e.value for e in estimates]))
    if all(e.draws is not None for e in estimates):
        return Estimate(value, np.mean([e.draws for e in estimates], axis=0))
    return Estimate(value, None, tuple((v / k ** 2, d) for e in estimates for v, d in e.variance_parts()))


# --- paired comparison ----------------------------------------------------------------------------------

@dataclass
class Comparison:
    """A method minus the baseline on one task: difference (points), its interval and p-value.

    `blocked` non-empty: no test, and it says why (different test images; too few seeds); the
    interval and p-value are NaN and the row stays out of the Holm family.
    """
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    draws: np.ndarray | None  # one seed a side: the paired bootstrap's draws; else None (var, df)
    paired: str  # "yes", or why not ("no: ...")
    n_images: int
    seeds: str
    test: str  # which test gave the p-value
    question: str = ""  # QUESTIONS: "runs" (one seed each) or "methods" (seeds); "" when blocked
    var: float = math.nan  # points^2 (several seeds)
    df: float = math.inf
    blocked: str = ""


def sign_test_p(only_a, discordant):
    """Two-sided exact binomial p-value of `only_a` successes in `discordant` trials at 1/2 (arrays too).

    What `scipy.stats.binomtest(k, n, 0.5).pvalue` returns (the distribution is symmetric, so the
    two tails are equal: twice the smaller, capped at 1), from `scipy.special.bdtr`: a ufunc, fast
    on arrays and without importing scipy.stats (a second here) for every table.
    """
    from scipy.special import bdtr

    only_a, discordant = np.asarray(only_a), np.asarray(discordant)
    p = np.minimum(1.0, 2 * bdtr(np.minimum(only_a, discordant - only_a), discordant, 0.5))
    return np.where(discordant == 0, 1.0, p)


def sign_test_rejects(only_a, discordant, alpha: float) -> np.ndarray:
    """`sign_test_p(only_a, discordant) < alpha`, elementwise, for many draws (the power simulations).

    The p-value grows with min(only_a, discordant - only_a), so each distinct discordant count D has a
    critical value: the largest m with 2 bdtr(m, D, 1/2) < alpha (-1: none), decided on the same `bdtr`
    values `sign_test_p` computes. The draws share a few hundred distinct D among tens of thousands, and
    each D's search starts at the normal approximation's critical value and steps to the exact one (two
    or three `bdtr` per D, where a bisection over [0, D/2] took a dozen): the same decisions.
    """
    from scipy.special import bdtr, ndtri

    only_a, discordant = np.asarray(only_a), np.asarray(discordant)
    counts, which = np.unique(discordant, return_inverse=True)
    top = counts // 2 - 1  # the largest m that can reject: 2 bdtr(D // 2, D, 1/2) >= 1

    def rejects(m):  # 2 bdtr(m, D, 1/2) < alpha, and true for m = -1 (no count rejects)
        return (m < 0) | (2 * bdtr(np.maximum(m, 0), counts, 0.5) < alpha)

    guess = np.floor((counts + ndtri(alpha / 2) * np.sqrt(counts)) / 2 - 0.5)  # continuity-corrected normal
    crit = np.clip(guess, -1, top).astype(np.int64)
    while not (ok := rejects(crit)).all():  # above the exact value: step down
        crit = np.where(ok, crit, crit - 1)
    while (up := (crit < top) & rejects(crit + 1)).any():  # below it: step up
        crit = crit + up
    return np.minimum(only_a, discordant - only_a) <= crit[which.reshape(discordant.shape)]


def mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Exact McNemar p-value: a two-sided binomial test on the discordant pairs (1.0 without any)."""
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return float(sign_test_p(only_a, only_a + only_b))


def discordance(a: Cell, b: Cell) -> float:
    """Share of the images that the first seeds of `a` and `b` score differently (`np.mean(a != b)`'s number)."""
    return int(np.bitwise_count(a.packed()[0] ^ b.packed()[0]).sum(dtype=np.int64)) / a.n


def normal_p(diff: float, draws: np.ndarray) -> float:
    """Two-sided p-value of `diff` against 0 with the bootstrap's standard error (normal reference)."""
    from scipy.special import ndtr

    se = float(np.std(draws))
    if se == 0.0:
        return 1.0 if diff == 0 else 0.0
    return float(2 * ndtr(-abs(diff) / se))


def short_fingerprint(fp: str) -> str:
    """`sha256:1a2b3c4d...` -> `1a2b3c4d`: enough to tell two listings apart in a table."""
    return str(fp).split(":")[-1][:8]


def too_few_seeds(sa: int, sb: int) -> str:
    """Why `sa` vs `sb` seeds get no test ("" where they do): one seed each compares the runs (exact McNemar);
    a test of methods needs `MIN_SEEDS` on each side, since a side's seed variance comes from its own seeds."""
    if sa == sb == 1 or min(sa, sb) >= MIN_SEEDS:
        return ""
    return (f"too few seeds: {sa} vs {sb} (one seed each compares the runs; the methods need "
            f"{MIN_SEEDS} or more on each side)")


def compare_cells(a: Cell, b: Cell, opts: CIOptions, *names: str) -> Comparison:
    """`a` minus `b` on one task, on the same test images: the runs (one seed each, exact McNemar and the
    paired bootstrap) or the methods (seeds on both sides, `seed_aware`); else blocked, with the reason."""
    sa, sb = a.seeds, b.seeds
    diff = round(float(np.mean(a.accuracies()) - np.mean(b.accuracies())) * 100.0, 9)
    seeds = f"{sa} vs {sb}"
    nan = math.nan
    if a.fingerprint != b.fingerprint or a.n != b.n:
        which = (f"{names[1] if len(names) > 2 else 'this'}: {a.n:,} images {short_fingerprint(a.fingerprint)}, "
                 f"{names[2] if len(names) > 2 else 'baseline'}: {b.n:,} images {short_fingerprint(b.fingerprint)}")
        return Comparison(diff, nan, nan, nan, None, "no: different test listings (test_fingerprint)",
                          min(a.n, b.n), seeds, "", blocked=f"not comparable: different test images ({which})")
    few = too_few_seeds(sa, sb)
    if few:
        return Comparison(diff, nan, nan, nan, None, "yes", a.n, seeds, "", blocked=few)
    if sa == sb == 1:
        rng = generator(opts.seed, "pair", *names)
        counts = pattern_counts(np.concatenate([a.packed(), b.packed()]), a.n)  # (4,) bit 0: a right, bit 1: b
        acc = _pattern_draws(counts, 2, a.n, opts.resamples, rng)  # (B, 2), the same images
        draws = np.round(acc[:, 0] - acc[:, 1], 9)  # identical predictions give exactly 0, not a rounding residue
        lo, hi = interval(draws, opts.level)
        p = float(sign_test_p(counts[1], counts[1] + counts[2]))  # `mcnemar`'s, from the discordant counts
        return Comparison(diff, lo, hi, p, draws, "yes", a.n, seeds,
                          "exact McNemar", QUESTIONS[0], float(np.var(draws)))
    mean, second = pair_moments(a, b)
    r = {k: float(v) for k, v in seed_aware(mean, second, a.n, sa).items()}
    lo, hi = t_interval(diff, r["var"], r["df"], opts.level)
    return Comparison(diff, lo, hi, float(t_p(diff, r["var"], r["df"])), None, "yes", a.n, seeds,
                      f"Welch t over seeds + test images (df {r['df']:.1f})", QUESTIONS[1], r["var"], r["df"])


def mean_comparison(parts: list[Comparison], opts: CIOptions) -> Comparison:
    """The difference of a benchmark mean (tasks fixed, independent): one seed a side everywhere, the per-task
    bootstrap draws averaged with a normal p-value; otherwise the variances combined (`average`), t reference."""
    diff = float(np.mean([c.diff for c in parts]))
    paired = "yes" if all(c.paired == "yes" for c in parts) else "partly: some tasks unpaired"
    questions = sorted({c.question for c in parts})
    question = questions[0] if len(questions) == 1 else " and ".join(questions)
    n = sum(c.n_images for c in parts)
    if all(c.draws is not None for c in parts):
        draws = np.mean([c.draws for c in parts], axis=0)
        lo, hi = interval(draws, opts.level)
        return Comparison(diff, lo, hi, normal_p(diff, draws), draws, paired, n, "",
                          "bootstrap over tasks' images (normal)", question, float(np.var(draws)))
    k = len(parts)
    var, df = satterthwaite([(c.var / k ** 2, c.df) for c in parts])  # a runs part: its bootstrap variance, df inf
    lo, hi = t_interval(diff, var, df, opts.level)
    return Comparison(diff, lo, hi, float(t_p(diff, var, df)), None, paired, n, "",
                      f"Welch t over tasks (df {df:.1f})", question, var, df)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment: the i-th smallest p times (m - i), made monotone, capped at 1.

    The same numbers as statsmodels' `multipletests(p, method="holm")` (tests/test_stats.py checks
    it), which is not called here: it runs `gc.collect()` on every call, 0.1 s each on this machine,
    and analyze.py makes one call per method and benchmark.
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def verdict(diff: float, p_adjusted: float, alpha: float) -> str:
    if p_adjusted < alpha and diff > 0:
        return VERDICTS[0]
    if p_adjusted < alpha and diff < 0:
        return VERDICTS[1]
    return VERDICTS[2]


# --- across tasks -------------------------------------------------------------------------------------------

def task_ranks(scores: np.ndarray, best_first: bool = True) -> np.ndarray:
    """(tasks, methods) accuracies -> (tasks, methods) ranks within each task (1 = best, or the lowest with
    `best_first=False`); ties share the mean of their ranks."""
    import pandas as pd

    return pd.DataFrame(scores).rank(axis=1, ascending=not best_first).to_numpy()


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """(tasks, methods) accuracies -> each method's mean rank over tasks (1 = best; ties share the mean rank)."""
    return task_ranks(scores).mean(axis=0)


def friedman(scores: np.ndarray) -> tuple[float, float]:
    """Friedman chi-square statistic (ties corrected) and p-value over (tasks, methods) accuracies.

    `scipy.stats.friedmanchisquare`'s statistic, in its order of operations (average ranks within each
    task, so the rank sums are exact), and its chi-square p-value from `scipy.special.chdtrc`: importing
    scipy.stats, about half a second of CPU here, was the largest single cost left in analyze.py's first
    run, and this is its only user with `nemenyi_cd`. tests/test_stats.py checks the two agree bit for bit.
    Raises ValueError where scipy does (fewer than 3 methods); no task gives nan, nan as scipy's does.
    """
    from scipy.special import chdtrc

    x = np.asarray(scores, dtype=float)
    n, k = x.shape
    if k < 3:
        raise ValueError(f"at least 3 methods are needed for the Friedman test, got {k}")
    if n == 0:
        return math.nan, math.nan
    ranks = task_ranks(x, best_first=False)  # (n, k), as scipy ranks
    tied = [np.unique(row, return_counts=True)[1] for row in x]
    ties = float(sum(np.sum(t * (t * t - 1.0)) for t in tied))
    c = 1 - ties / (k * (k * k - 1) * n)
    ssbn = np.sum(np.sum(ranks, axis=0) ** 2)
    with np.errstate(divide="ignore", invalid="ignore"):  # every task tied throughout: c = 0, nan as scipy gives
        statistic = (12.0 / (k * n * (k + 1)) * ssbn - 3 * n * (k + 1)) / c
    return float(statistic), float(chdtrc(k - 1, statistic))


@functools.lru_cache(maxsize=64)
def studentized_range_quantile(p: float, k: int) -> float:
    """The `p` quantile of the range of `k` independent standard normals (the studentized range with infinite
    degrees of freedom): `scipy.stats.studentized_range.ppf(p, k, np.inf)` to about 1e-13, without importing
    scipy.stats (see `friedman`). Its distribution function is k * integral of phi(z) (Phi(z + q) - Phi(z))^(k-1)
    dz (Hartley 1942): a smooth integrand, negligible beyond |z| = 12, on which the trapezoid rule converges
    exponentially, so a step of 0.1 is exact to rounding. The quantile is found by Newton's method inside a
    shrinking bracket (bisection where a step would leave it).
    """
    from scipy.special import ndtr

    if not (0 < p < 1) or k < 2:
        raise ValueError(f"studentized range quantile: p={p} must lie in (0, 1) and k={k} must be >= 2")
    step = 0.1
    z = np.arange(-120, 121) * step
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    below = ndtr(z)

    def cdf_and_density(q: float) -> tuple[float, float]:
        inside = ndtr(z + q) - below  # P(one draw in (z, z + q])
        w = phi * inside ** (k - 2)
        density = k * (k - 1) * np.sum(w * np.exp(-0.5 * (z + q) ** 2)) * step / math.sqrt(2 * math.pi)
        return float(k * np.sum(w * inside) * step), float(density)

    lo, hi = 0.0, 1.0
    while cdf_and_density(hi)[0] < p:
        lo, hi = hi, 2 * hi
    q = hi
    for _ in range(200):
        cdf, density = cdf_and_density(q)
        lo, hi = (q, hi) if cdf < p else (lo, q)
        nxt = q - (cdf - p) / density if density > 0 else math.nan
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - q) <= 4e-16 * q:
            return nxt
        q = nxt
    return q


def nemenyi_cd(k: int, n_tasks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks (Demšar 2006): q_alpha sqrt(k (k + 1) / (6 N)),
    q_alpha the studentized range quantile over sqrt(2)."""
    q = studentized_range_quantile(1 - alpha, k) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6.0 * n_tasks)))


def probability_of_improvement(per_task: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """P(A > B): per task the chance a seed of A beats a seed of B (ties half), averaged over tasks (rliable's)."""
    values = []
    for a, b in per_task:
        a, b = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
        values.append(float(np.mean((a > b) + 0.5 * (a == b))))
    return float(np.mean(values))


# --- how many images and seeds are enough ------------------------------------------------------------------

def detectable_difference(n: int, discordance: float, alpha: float = 0.05, power: float = POWER,
                          sims: int = 400, seed: int = 0) -> float:
    """Smallest difference (points) the exact McNemar test finds with `power` at level `alpha`.

    Simulated, not from a formula: pairs of runs on `n` images that disagree on a fraction
    `discordance` of them (observed between the task's methods), for differences on a 0.1-point
    grid; the first difference whose simulated power reaches `power`. NaN if none up to 50 points.
    """
    rng = np.random.default_rng([seed, n])
    for start in range(1, 501, 50):  # 0.1-point steps, 5 points at a time: most answers lie in the first
        d = np.arange(start, start + 50) / 1000.0  # (G,) candidate differences as fractions
        q = np.maximum(discordance, d)  # a difference d needs at least d of the pairs to disagree
        disc = rng.binomial(n, np.broadcast_to(q[:, None], (len(d), sims)))  # (G, sims) discordant pairs
        only_a = rng.binomial(disc, np.broadcast_to(((1 + d / q) / 2)[:, None], disc.shape))
        reached = np.flatnonzero(sign_test_rejects(only_a, disc, alpha).mean(axis=1) >= power)
        if reached.size:
            return float(d[reached[0]] * 100)
    return math.nan


# --- the tables' statistics (records and leaderboards in, plain dicts and frames out) ----------------------

@dataclass
class TableStats:
    """Intervals and comparisons of one leaderboard (one benchmark, one protocol)."""
    intervals: dict = field(default_factory=dict)  # (backbone, method, column) -> (low, high)
    reasons: dict = field(default_factory=dict)  # (backbone, method, dataset) -> why no interval
    cells: dict = field(default_factory=dict)  # (backbone, method, dataset) -> Cell (usable ones)
    significance: list = field(default_factory=list)  # rows of the significance table
    marks: dict = field(default_factory=dict)  # (backbone, method, column) -> "▲" / "▼" / NOT_COMPARABLE
    baselines: dict = field(default_factory=dict)  # backbone -> baseline label
    noise: list = field(default_factory=list)  # rows of the noise (interval width, detectable difference) table
    ranks: list | None = None  # `rank_stats` with each backbone's `improvement_matrix` (None: not computed yet)


def runs_by_cell(recs, metric: str) -> dict:
    """(backbone, label, dataset) -> the cell's completed records as dicts (the fields predictions need)."""
    import pandas as pd

    value = pd.to_numeric(recs[metric], errors="coerce") if metric in recs else None
    done = recs[(recs["status"] == "completed") & (value.notna() if value is not None else False)]
    cols = [c for c in ("path", "seed", "test_fingerprint", "predictions", "predictions_complete",
                        "predictions_target", "predictions_reason", metric) if c in done]
    out: dict = {}
    for key, r in zip(zip(done["backbone"], done["label"], done["dataset"]), done[cols].to_dict("records")):
        out.setdefault(key, []).append(r)
    return out


def table_stats(table, recs, metric: str, opts: CIOptions, store: Predictions, baseline: str | None = None,
                groups: dict | None = None) -> TableStats:
    """Intervals for every cell and average of `table`, and every method against its backbone's baseline.

    Args:
        table: `tables.leaderboard` (its attrs name the tasks and groups).
        recs: the records it was built from, with `label` (`tables.with_labels`).
        baseline: the method label compared against; None: `full` where the backbone has it, else
            the backbone's first row.
        groups: group name -> its datasets (the table's group columns).
    """
    from bench.analysis.tables import base_method

    out = TableStats()
    if opts.method == "none":
        return out
    tasks, groups = list(table.attrs["tasks"]), dict(groups or {})
    runs = runs_by_cell(recs, metric)
    store.prefetch([k for row in table.index for t in tasks if (*row, t) in runs
                    for k in prediction_keys(runs[(*row, t)], metric)])  # the files not indexed: read at once
    found: dict = {}
    for backbone, label in table.index:
        for t in tasks:
            key = (backbone, label, t)
            if key not in runs:
                continue
            cell = cell_predictions(runs[key], store, metric)
            if cell.reason:
                out.reasons[key] = cell.reason
                continue
            out.cells[key] = cell
            found[t] = cell_estimate(cell, opts, *key)
            out.intervals[key] = found[t].interval(opts.level)
        _average_intervals(out.intervals, (backbone, label), found, tasks, groups, table.columns, opts.level)
        found.clear()
    rows = list(table.index)
    values = {t: table[t].to_dict() for t in tasks}  # task -> (backbone, label) -> mean: no pandas lookup per cell
    for backbone in dict.fromkeys(b for b, _ in rows):
        labels = [lab for b, lab in rows if b == backbone]
        if baseline is not None:
            base = baseline if baseline in labels else None
        else:
            base = next((lab for lab in labels if lab == "full"), None) or next(
                (lab for lab in labels if base_method(lab) == "full"), labels[0])
        if base is None or len(labels) < 2:
            continue
        out.baselines[backbone] = base
        for label in labels:
            if label != base:
                _compare_row(out, backbone, label, base, tasks, groups, table, values, opts)
    out.noise = _noise_rows(out, tasks, opts)
    return out


def _average_intervals(intervals, row, found, tasks, groups, columns, level) -> None:
    """Intervals of the group means and averages from the per-task estimates (tasks fixed, `average`)."""
    by_group = {}
    for name, members in groups.items():
        if all(m in found for m in members):
            by_group[name] = average([found[m] for m in members])
            intervals[(*row, name)] = by_group[name].interval(level)
    if "mean" in columns and tasks and all(t in found for t in tasks):
        intervals[(*row, "mean")] = average([found[t] for t in tasks]).interval(level)
    if "mean_of_groups" in columns and groups and len(by_group) == len(groups):
        intervals[(*row, "mean_of_groups")] = average(list(by_group.values())).interval(level)


def _compare_row(out: TableStats, backbone, label, base, tasks, groups, table, values, opts: CIOptions) -> None:
    """One method against the baseline: every task it shares with the baseline, Holm over those, averages."""
    found, rows = {}, []
    for t in tasks:
        a, b = out.cells.get((backbone, label, t)), out.cells.get((backbone, base, t))
        va, vb = values[t][(backbone, label)], values[t][(backbone, base)]
        if va != va or vb != vb:
            continue
        row = {"backbone": backbone, "method": label, "baseline": base, "dataset": t, "diff": float(va - vb),
               "ci_low": math.nan, "ci_high": math.nan, "p_value": math.nan, "p_adjusted": math.nan,
               "verdict": "no interval", "n_images": None, "seeds": None, "compares": "", "paired": "", "test": ""}
        if a is None or b is None:
            why = out.reasons.get((backbone, label, t)) or out.reasons.get((backbone, base, t)) or "no predictions"
            row["paired"] = f"no: {why}"
        else:
            c = compare_cells(a, b, opts, backbone, label, base, t)
            row.update(diff=c.diff, ci_low=c.ci_low, ci_high=c.ci_high, p_value=c.p_value, n_images=c.n_images,
                       seeds=c.seeds, compares=c.question, paired=c.paired, test=c.test)
            if c.blocked:  # no test: the reason is the verdict, and the row stays out of the Holm family
                row["verdict"] = c.blocked
                if c.blocked.startswith("not comparable"):
                    out.marks[(backbone, label, t)] = NOT_COMPARABLE
            else:
                found[t] = c
            if c.paired == "yes":
                row["discordance"] = discordance(a, b)
        rows.append(row)
    tested = [r for r in rows if r["p_value"] == r["p_value"]]
    for r, p in zip(tested, holm([r["p_value"] for r in tested])):
        r["p_adjusted"] = float(p)
        r["verdict"] = verdict(r["diff"], r["p_adjusted"], opts.alpha)
    averages = []
    if "mean" in table.columns and tasks and all(t in found for t in tasks):
        averages.append(("mean", mean_comparison([found[t] for t in tasks], opts)))
    if "mean_of_groups" in table.columns and groups and all(t in found for t in tasks):
        by_group = [mean_comparison([found[t] for t in members], opts) for members in groups.values()]
        averages.append(("mean_of_groups", mean_comparison(by_group, opts)))
    for name, c in averages:  # an average is its own test: not in the tasks' Holm family
        rows.append({"backbone": backbone, "method": label, "baseline": base, "dataset": name, "diff": c.diff,
                     "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value, "p_adjusted": c.p_value,
                     "verdict": verdict(c.diff, c.p_value, opts.alpha), "n_images": c.n_images, "seeds": "",
                     "compares": c.question, "paired": c.paired, "test": c.test})
    for r in rows:
        if r["verdict"] in VERDICTS[:2]:
            out.marks[(backbone, label, r["dataset"])] = "▲" if r["verdict"] == VERDICTS[0] else "▼"
    out.significance += rows


def _noise_rows(out: TableStats, tasks, opts: CIOptions) -> list[dict]:
    """Per task: images, seeds, the median interval half-width, and the smallest detectable difference."""
    rows = []
    for t in tasks:
        cells = [c for (_, _, d), c in out.cells.items() if d == t]
        if not cells:
            continue
        widths = [(hi - lo) / 2 for (b, m, d), (lo, hi) in out.intervals.items() if d == t]
        disc = [r["discordance"] for r in out.significance if r["dataset"] == t and "discordance" in r]
        n = int(np.median([c.n for c in cells]))
        q = float(np.median(disc)) if disc else math.nan
        rows.append({"dataset": t, "n_images": n, "seeds": int(np.median([c.seeds for c in cells])),
                     "half_width": float(np.median(widths)), "discordance": q,
                     "detectable_diff": detectable_difference(n, q, opts.alpha, seed=opts.seed) if q == q else math.nan})
    return rows


def rank_stats(table, min_tasks: int = 5, min_methods: int = 3, alpha: float = 0.05) -> list[dict]:
    """Per backbone with >= `min_tasks` tasks and >= `min_methods` methods done on all of them:
    average ranks, the Friedman test and the Nemenyi critical difference (Demšar 2006)."""
    tasks = list(table.attrs["tasks"])
    out = []
    if len(tasks) < min_tasks:
        return out
    for backbone in dict.fromkeys(b for b, _ in table.index):
        sub = table.xs(backbone, level="backbone")[tasks].dropna()
        if len(sub) < min_methods:
            continue
        scores = sub.to_numpy(dtype=float).T  # (tasks, methods)
        try:
            stat, p = friedman(scores)
        except ValueError:  # scipy refuses some degenerate tables (e.g. every method tied everywhere)
            stat, p = math.nan, math.nan
        out.append({"backbone": backbone, "methods": list(sub.index), "tasks": tasks, "scores": scores,
                    "ranks": average_ranks(scores), "friedman": stat, "p_value": p,
                    "cd": nemenyi_cd(len(sub), len(tasks), alpha)})
    return out


def ranks_with_improvement(table, recs, metric: str, alpha: float = 0.05) -> list[dict]:
    """`rank_stats` of a leaderboard, each entry with `improvement`: its `improvement_matrix`."""
    ranked = rank_stats(table, alpha=alpha)
    for r in ranked:
        r["improvement"] = improvement_matrix(recs, metric, r["backbone"], r["methods"], r["tasks"])
    return ranked


def improvement_matrix(recs, metric: str, backbone: str, methods: list[str], tasks: list[str]):
    """P(row method > column method) over tasks, seeds compared pairwise within each task (rliable's)."""
    import pandas as pd

    done = recs[(recs["status"] == "completed") & (recs["backbone"] == backbone)]
    values = pd.to_numeric(done[metric], errors="coerce")
    per_seed = values.groupby([done["label"], done["dataset"], done["seed"]]).mean()
    seeds: dict = {}  # (label, dataset) -> its seeds' values, in seed order (a groupby per cell costs more)
    for (label, dataset, _), v in zip(per_seed.index, per_seed.to_numpy()):
        seeds.setdefault((label, dataset), []).append(v)
    k = len(methods)
    # (k, k, tasks) each pair's share of seed pairs won per task, all pairs of a task at once: the wins and ties
    # are counted as integers, so (wins + ties / 2) / pairs is exactly `probability_of_improvement`'s mean
    per_task = np.empty((k, k, len(tasks)))
    for n, t in enumerate(tasks):
        cols = [np.asarray(seeds[(a, t)], float) for a in methods]
        x = np.concatenate(cols)  # (N,) every method's seeds
        sizes = np.array([len(c) for c in cols])
        owner = (np.repeat(np.arange(k), sizes)[None, :] == np.arange(k)[:, None]).astype(np.int64)  # (k, N)
        wins = owner @ (x[:, None] > x[None, :]).astype(np.int64) @ owner.T
        ties = owner @ (x[:, None] == x[None, :]).astype(np.int64) @ owner.T
        per_task[:, :, n] = (wins + 0.5 * ties) / np.outer(sizes, sizes)
    m = np.full((k, k), math.nan)
    for i in range(k):
        for j in range(k):
            if methods[i] != methods[j]:
                m[i, j] = float(np.mean(per_task[i, j]))  # the mean over tasks, as probability_of_improvement's
    return pd.DataFrame(m, index=methods, columns=methods)
