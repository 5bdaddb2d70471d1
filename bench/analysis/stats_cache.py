"""analyze.py's statistics cache (OUT/.stats/<table>.json): a table's `stats.TableStats` as plain JSON.

The cache lives in the results folder being analysed, which others may write to (a shared lab
folder, a tarball someone sent), so reading it must never run code: the format is JSON, and
decoding builds only what the statistics hold (numbers, strings, lists, tuples, dicts with any
keys, numeric numpy scalars and arrays, pandas frames of them, `TableStats`), nothing named by the
file. A file that is not such a cache (tampered, truncated, foreign, an old pickle) raises
`CacheError` and the caller recomputes; the decoded values have the types the statistics had, so
tables from the cache are byte for byte those computed afresh.
"""
import dataclasses
import json

import numpy as np
import pandas as pd

from bench.analysis import stats

FORMAT = "bench-stats-cache/1"
NUMERIC = "biuf"  # numpy dtype kinds a cache may hold: bool, int, unsigned, float (never object)


class CacheError(ValueError):
    """The file is not a statistics cache this code wrote."""


def _dtype(name) -> np.dtype:
    dtype = np.dtype(str(name))
    if dtype.kind not in NUMERIC:
        raise CacheError(f"dtype {name!r} is not numeric")
    return dtype


def encode(value):
    """`value` as JSON-ready data, its types tagged; TypeError on anything a cache never holds."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):  # before int/float: np.float64 is a float, and must come back as one
        return {"scalar": _dtype(value.dtype.str).str, "value": value.item()}
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [encode(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[encode(k), encode(v)] for k, v in value.items()]}
    if isinstance(value, np.ndarray):
        return {"array": _dtype(value.dtype.str).str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, pd.DataFrame):
        return {"frame": {"values": encode(value.to_numpy()), "index": encode(list(value.index)),
                          "columns": encode(list(value.columns)),
                          "names": encode((value.index.name, value.columns.name)), "attrs": encode(dict(value.attrs))}}
    if isinstance(value, stats.TableStats):
        return {"TableStats": {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    raise TypeError(f"{type(value).__name__} is not kept in the statistics cache")


def decode(data):
    """The value `encode` gave `data`; CacheError on anything it would not have written."""
    if data is None or isinstance(data, (bool, str, int, float)):
        return data
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        raise CacheError(f"unexpected {type(data).__name__}")
    tag = next(iter(data), None)
    if tag == "scalar" and data.keys() == {"scalar", "value"}:
        return _dtype(data["scalar"]).type(data["value"])
    if tag == "tuple" and len(data) == 1 and isinstance(data["tuple"], list):
        return tuple(decode(v) for v in data["tuple"])
    if tag == "dict" and len(data) == 1 and isinstance(data["dict"], list):
        if not all(isinstance(kv, list) and len(kv) == 2 for kv in data["dict"]):
            raise CacheError("a dict entry is not a key and a value")
        return {decode(k): decode(v) for k, v in data["dict"]}
    if tag == "array" and data.keys() == {"array", "shape", "data"}:
        if not (isinstance(data["shape"], list) and all(isinstance(n, int) and n >= 0 for n in data["shape"])
                and isinstance(data["data"], list)):
            raise CacheError("an array without a shape and a flat list of numbers")
        values = data["data"]
        if not all(isinstance(v, (bool, int, float)) for v in values):
            raise CacheError("an array holding something other than numbers")
        return np.array(values, dtype=_dtype(data["array"])).reshape(data["shape"])
    if tag == "frame" and len(data) == 1 and isinstance(data["frame"], dict):
        f = data["frame"]
        if f.keys() != {"values", "index", "columns", "names", "attrs"}:
            raise CacheError("a frame without its values, index, columns, names and attrs")
        index_name, columns_name = decode(f["names"])
        frame = pd.DataFrame(decode(f["values"]), index=pd.Index(decode(f["index"]), name=index_name),
                             columns=pd.Index(decode(f["columns"]), name=columns_name))
        frame.attrs.update(decode(f["attrs"]))
        return frame
    if tag == "TableStats" and len(data) == 1 and isinstance(data["TableStats"], dict):
        names = {f.name for f in dataclasses.fields(stats.TableStats)}
        if data["TableStats"].keys() != names:
            raise CacheError("TableStats with other fields")
        return stats.TableStats(**{k: decode(v) for k, v in data["TableStats"].items()})
    raise CacheError(f"unknown entry {sorted(data)[:3]}")


def dumps(digest: str, table_stats: stats.TableStats) -> str:
    """The cache file's text: its format, the digest of what the statistics came from, the statistics."""
    return json.dumps({"format": FORMAT, "digest": digest, "stats": encode(table_stats)})


def loads(data: bytes, digest: str) -> stats.TableStats | None:
    """The cached statistics if the file holds those of `digest`, None if it holds others (stale).

    Raises:
        CacheError: the file is not a statistics cache (tampered, truncated, foreign).
    """
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as e:  # ValueError: not JSON, not UTF-8
        raise CacheError(f"not JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("digest"), str):
        raise CacheError(f"not a {FORMAT} file")
    if doc["digest"] != digest:
        return None
    try:
        out = decode(doc.get("stats"))
    except CacheError:
        raise
    except (ValueError, TypeError, KeyError, RecursionError) as e:
        raise CacheError(f"unreadable statistics ({type(e).__name__})") from None
    if not isinstance(out, stats.TableStats):
        raise CacheError("no TableStats in it")
    return out
