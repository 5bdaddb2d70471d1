"""Top-1 evaluation under `torch.inference_mode`, batched, with an optional progress bar.

`predict` is the one evaluation pass: it returns every image's arg-max class and label in the
split's order, so a run keeps the per-image predictions behind its score (bench/predictions.py)
without scoring the split a second time; `top1` is `accuracy` over `predict`.
`evaluate_robustness` scores an ImageNet model on the robustness and domain-shift targets that
bench/data/robustness.py lists.
"""
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from tqdm.auto import tqdm

from bench.data import robustness as R
from bench.data.batching import batches, spans
from bench.data.fingerprint import fingerprint, relative_ids
from bench.data.torch_datasets import FileImages, ImageDataset, Origins
from bench.data.transforms import eval_transform
from bench.train import dist


@torch.inference_mode()
def predict(model: nn.Module, data: Dataset, batch_size: int, device: torch.device, desc: str = "eval",
            progress: bool = True, amp: torch.dtype | None = None,
            shard: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(arg-max class, label) of every image of `data`, as int64 arrays in the dataset's order.

    With several processes (`shard`, by default when there are) each rank predicts its part of
    every batch and the parts are gathered, so that every rank holds every image's prediction
    exactly once, in order (the official code pads the last shard with repeated images and
    averages per-batch accuracies).
    """
    cut = dist.shard() if shard is None or shard else None  # (rank, world) with several processes
    was_training = model.training
    model.eval()
    preds, labels = [], []  # kept on the device: one transfer at the end, no host sync per batch
    for x, y in tqdm(batches(data, batch_size, shard=cut), total=-(-len(data) // batch_size), desc=desc,
                     leave=False, disable=not progress or not dist.is_main()):
        if len(y) == 0:  # this rank's part of a last batch smaller than the world
            continue
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            preds.append(model(x).argmax(-1))
        labels.append(y)
    model.train(was_training)
    pred, target = (torch.cat(t).cpu().numpy().astype(np.int64) if t else np.zeros(0, np.int64)
                    for t in (preds, labels))
    if cut is None:
        return pred, target
    # each rank's images are its parts of the batches, in batch order (bench.data.batching.spans): their
    # positions in the split put the gathered parts back in the split's order
    mine = np.concatenate([np.arange(a, b) for a, b in spans(len(data), batch_size, False, cut)] or [[]])
    out_pred, out_target = np.full(len(data), -1, np.int64), np.full(len(data), -1, np.int64)
    seen = 0
    for where, p, t in dist.gather((mine.astype(np.int64), pred, target)):
        out_pred[where], out_target[where] = p, t
        seen += len(where)
    assert seen == len(data) and (out_target >= 0).all(), "sharded evaluation missed or repeated an image"
    return out_pred, out_target


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    """Top-1 in percent: 100 * mean(pred == target) (0 for no images)."""
    return 100.0 * float(np.mean(pred == target)) if len(target) else 0.0


def top1(model: nn.Module, data: Dataset, batch_size: int, device: torch.device, desc: str = "eval",
         progress: bool = True, amp: torch.dtype | None = None, shard: bool | None = None) -> float:
    """Percentage of `data` whose arg-max logit equals the label (under autocast to `amp` if given);
    sharded over processes as `predict` is, every image counted once."""
    return accuracy(*predict(model, data, batch_size, device, desc, progress, amp, shard))


def evaluate_robustness(model: nn.Module, cfg, mean, std, device: torch.device, batch_size: int = 250,
                        progress: bool = True, predictions: dict | None = None) -> dict:
    """Score an ImageNet-1k model (1000 outputs in sorted-WordNet-id order) on `cfg.robustness` and
    `cfg.domain_shift` (bench/data/robustness.py lists the targets and holds the arithmetic).

    Each target is one DataLoader; ImageNet-C's 75 (or 95) corruption x severity folders are one
    DataLoader over all of them (a ConcatDataset), its predictions cut back into folders by their
    offsets, so the workers start once, not once per folder.

    Args:
        predictions: when given, filled with each target's per-image outcome, by target name
            (`imagenet_a`, ..., `corruption_target(c, s)` for ImageNet-C): `pred` (the prediction
            the score used: for A and R the arg-max over their 200 classes), `target`,
            `fingerprint` (over the image paths relative to the target's folder, and labels),
            `num_classes` and `bad_images` (unreadable images skipped).

    Returns:
        the record's `robustness` field: `imagenet_a_top1`, `imagenet_r_top1`, `imagenet_c_mce`
        (as configured), plus `imagenet_c_ce` (per corruption) and `imagenet_c_top1`
        (per corruption and severity) and the image counts.
    """
    transform = eval_transform(cfg, mean, std)

    def dataset(listing) -> ImageDataset:
        return ImageDataset(FileImages(listing.paths), listing.labels, transform, Origins(listing), cfg.name,
                            cfg.on_bad_image == "skip")

    @torch.inference_mode()
    def predict_all(data, columns, desc: str, both: bool):
        """(pred, target, 1000-way arg-max) over `data`; pred is restricted to `columns` when given
        (a position among them, or back to ImageNet indices with `both`: 1000-way labels)."""
        was = model.training
        model.eval()
        preds, targets, wholes = [], [], []
        for x, y in tqdm(DataLoader(data, batch_size=batch_size, num_workers=cfg.num_workers), desc=desc,
                         leave=False, disable=not progress):
            logits = model(x.to(device))
            if logits.shape[-1] != 1000:
                raise ValueError(f"robustness evaluation needs a 1000-way ImageNet model, got {logits.shape[-1]} outputs")
            whole = logits.argmax(-1).cpu()
            pred = whole
            if columns is not None:  # the arg-max over the subset's columns, as a position in the subset
                pred = logits[:, torch.as_tensor(columns, device=logits.device)].argmax(-1).cpu()
                if both:  # 1000-way labels: back to ImageNet indices
                    pred = torch.as_tensor(columns)[pred]
            preds.append(pred.numpy())
            targets.append(y.numpy())
            wholes.append(whole.numpy())
        model.train(was)
        return tuple(np.concatenate(a) if a else np.zeros(0, np.int64) for a in (preds, targets, wholes))

    def keep(name: str, listing, root: Path, pred, target, classes: int, bad: int) -> float:
        """Top-1 of one target; its predictions go into `predictions[name]`."""
        if predictions is not None:
            predictions[name] = {"pred": pred, "target": target, "num_classes": classes, "bad_images": bad,
                                 "fingerprint": fingerprint(relative_ids(listing.paths, root), listing.labels)}
        return accuracy(pred, target)

    def score(name: str, listing, root: Path, columns=None, both: bool = False):
        data = dataset(listing)
        pred, target, whole = predict_all(data, columns, name, both)
        classes = 1000 if columns is None or both else len(columns)
        top1 = keep(name, listing, root, pred, target, classes, data.bad_images)
        return (top1, accuracy(whole, target)) if both else top1

    out: dict = {}
    for name in cfg.robustness:
        if name in R.SUBSETS:
            listing = R.subset_listing(cfg, name)
            out[f"{name}_top1"] = score(name, listing, R.target_root(cfg, name), R.subset_classes(name)[1])
            out[f"{name}_images"] = len(listing)
        elif name == "imagenet_c":
            root = R.target_root(cfg, name)
            folders = [(c, s, R.corruption_listing(cfg, c, s)) for c in R.corruptions_present(cfg) for s in R.SEVERITIES]
            parts = [dataset(listing) for *_, listing in folders]
            pred, target, _ = predict_all(ConcatDataset(parts), None, name, False)
            top1: dict = {}
            start = 0
            for (c, s, listing), part in zip(folders, parts):  # the folders' images, in order, one after another
                end = start + len(listing)
                top1.setdefault(c, {})[s] = keep(R.corruption_target(c, s), listing, root / c / str(s),
                                                 pred[start:end], target[start:end], 1000, part.bad_images)
                start = end
            out["imagenet_c_mce"], out["imagenet_c_ce"] = R.mce({c: {s: 100.0 - a for s, a in v.items()}
                                                                 for c, v in top1.items()})
            out["imagenet_c_top1"] = top1
        else:
            raise KeyError(f"unknown robustness evaluation {name!r}; valid: {list(R.EVALUATIONS)}")
    for name in cfg.domain_shift:  # NOAH's domain-generalisation targets: lists with 1000-way labels
        listing, root = R.domain_listing(cfg, name), R.target_root(cfg, name, "domain_shift")
        if name in R.SUBSETS:  # A and R: restricted to their 200 classes (as above), and NOAH's 1000-way arg-max
            out[f"{name}_top1"], out[f"{name}_top1_1000way"] = score(name, listing, root, R.subset_classes(name)[1],
                                                                     both=True)
        else:
            out[f"{name}_top1"] = score(name, listing, root)
        out[f"{name}_images"] = len(listing)
    return out
