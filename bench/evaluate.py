"""Top-1 evaluation under `torch.inference_mode`, batched, with an optional progress bar."""
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm


@torch.inference_mode()
def top1(model: nn.Module, data: Dataset, batch_size: int, device: torch.device, desc: str = "eval",
         progress: bool = True) -> float:
    """Percentage of `data` whose arg-max logit equals the label."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    n = 0
    for x, y in tqdm(DataLoader(data, batch_size=batch_size), desc=desc, leave=False, disable=not progress):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (model(x).argmax(-1) == y).sum()
        n += len(y)
    model.train(was_training)
    return 100.0 * correct.item() / max(n, 1)
