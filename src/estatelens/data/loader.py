"""PyTorch datasets and loaders over validated samples."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from .dataset import Sample
from .images import PhotoError, open_rgb


class LabelledPhotos(Dataset):
    """Decodes each photo near the size the transform needs (JPEG draft mode) and applies it.

    Items are (image tensor, class index, sample index). A photo that fails to decode now (it
    was valid when checked, but the file changed) yields None and is dropped by `collate_photos`.
    """

    def __init__(self, samples: Sequence[Sample], class_to_idx: dict[str, int],
                 transform: Callable, decode_side: int):
        self.samples = list(samples)
        self.class_to_idx = class_to_idx
        self.transform = transform
        self.decode_side = decode_side

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        s = self.samples[i]
        try:
            im = open_rgb(s.path, self.decode_side)
        except PhotoError:
            return None
        return self.transform(im), self.class_to_idx.get(s.label, -1), i


def collate_photos(batch):
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    xs, ys, idx = zip(*batch)
    return torch.stack(xs), torch.tensor(ys), torch.tensor(idx)


def make_loader(dataset: Dataset, batch_size: int, shuffle: bool, workers: int, seed: int = 0,
                drop_last: bool = False) -> DataLoader:
    """`drop_last` is for training: a final batch of one breaks batch norm (Inception's aux head)."""
    g = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      collate_fn=collate_photos, generator=g, persistent_workers=False,
                      prefetch_factor=4 if workers else None,
                      drop_last=drop_last and len(dataset) > batch_size)
