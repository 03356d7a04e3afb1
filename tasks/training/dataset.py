"""A Dataset that is a schedule: item k is the k-th entry of a given order of encoded samples.

    dataset = OrderedDataset(encoded_by_id, ["id-3", "id-1", "id-3", ...])   # replays repeat ids
    dataset[0]            # {"position": 0, "sample": EncodedSample}
    dataset.fingerprint() # sha256 of the id sequence: a resumed run must train the same order

The order is decided once, by the stage (a curriculum, a seeded shuffle, an SFT mixture); the
sampler (tasks/training/sampler.py) never reorders it.
"""

from __future__ import annotations

import hashlib

import torch

from tasks.training.encode import EncodedSample


class OrderedDataset(torch.utils.data.Dataset):
    """Encoded samples in schedule order: item k is the k-th schedule entry (replays repeat ids)."""

    def __init__(self, encoded: dict[str, EncodedSample], order: list[str]):
        missing = [i for i in order if i not in encoded]
        if missing:
            raise KeyError(f"{len(missing)} scheduled ids have no encoded sample, e.g. {missing[:3]}")
        self.encoded = encoded
        self.order = list(order)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, k: int) -> dict:
        return {"position": k, "sample": self.encoded[self.order[k]]}

    def fingerprint(self) -> str:
        """sha256 of the id sequence: a resumed run must train the same order."""
        h = hashlib.sha256()
        for i in self.order:
            h.update(i.encode())
            h.update(b"\n")
        return h.hexdigest()
