"""The judge: a small convolutional classifier of one dataset, trained once and kept in vaelab's data cache,
whose labels and features score a model's samples (`quality.samples`).

It is trained on the training split, each image shown gray or binarised afresh (a coin flip per image
and epoch), so that it reads a binarised model's samples as well as gray ones; seeded, it repeats on
one machine (its weights differ in the last bits on another CPU). The cache is one safetensors file,
`{dataset}-judge-v{JUDGE_VERSION}-seed{seed}.safetensors`, whose metadata records what it was trained
on and how (`JudgeRecord`), with a JSON copy of that record beside it for people; a file whose record
does not match the data, the seed or the recipe is trained again, never trusted. Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load, save
from torch import nn

from ..runtime.files import atomic_write_bytes

JUDGE_VERSION = 1
EPOCHS = 3
BATCH = 128
LEARNING_RATE = 1e-3
FEATURES = 128  # the width of the layer whose activations the Fréchet distance compares


class JudgeNet(nn.Module):
    """Two 3 x 3 convolutions (16 and 32 channels, ReLU, 2 x 2 max-pooling), pooled to 7 x 7, a hidden
    layer of FEATURES ReLU units (`features`) and the class logits: images [n, C, H, W] in [0, 1] of any
    size from 4 x 4 (MNIST: about a million multiply-adds an image)."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.convolutions = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(7), nn.Flatten())
        self.hidden = nn.Linear(32 * 49, FEATURES)
        self.out = nn.Linear(FEATURES, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[n, FEATURES]: the hidden layer's activations."""
        return F.relu(self.hidden(self.convolutions(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[n, num_classes] logits."""
        return self.out(self.features(x))


@dataclass(frozen=True)
class JudgeRecord:
    """What a cached judge was trained on and how, and what it scores on the test split."""

    dataset: str
    fingerprint: str  # sha256 of the training and test arrays it was trained and tested on
    seed: int
    epochs: int
    version: int
    test_accuracy: float  # on the gray test images
    test_accuracy_binarised: float  # on the test images binarised once (seed 0)
    seconds: float  # its training time, where it was trained


@dataclass
class Judge:
    """A trained judge and its record."""

    net: JudgeNet
    record: JudgeRecord

    @torch.no_grad()
    def read(self, images: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """(class probabilities [n, classes], features [n, FEATURES]) of images [n, C, H, W] in [0, 1]."""
        self.net.eval()
        device = next(self.net.parameters()).device
        probs, features = [], []
        for start in range(0, images.shape[0], batch):
            found = self.net.features(images[start : start + batch].to(device, torch.float32))
            features.append(found)
            probs.append(torch.softmax(self.net.out(found), dim=-1))
        return torch.cat(probs), torch.cat(features)


def fingerprint(*arrays: np.ndarray) -> str:
    """sha256 over the arrays' shapes, types and bytes."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def judge_path(cache_dir: Path, dataset: str, seed: int) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in dataset)
    return Path(cache_dir) / f"{safe}-judge-v{JUDGE_VERSION}-seed{seed}.safetensors"


def train_judge(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray,
                test_labels: np.ndarray, num_classes: int, seed: int = 0, epochs: int = EPOCHS,
                dataset: str = "", log=lambda _: None) -> Judge:
    """Train a judge on images (n, C, H, W) uint8 (0..255) and labels (n,): Adam at LEARNING_RATE,
    batches of BATCH in an order drawn with `seed`, every image gray or binarised (a coin flip each
    time it is shown, the pixels drawn as Bernoulli of their gray levels), `epochs` epochs; then its
    accuracy on the test images, gray and binarised once (seed 0)."""
    started = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    torch_seed = int(torch.randint(0, 2**62, (), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(torch_seed)  # the layers' initial weights
        net = JudgeNet(train_images.shape[1], num_classes)
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)
    images = torch.from_numpy(train_images)
    labels = torch.from_numpy(train_labels.astype(np.int64))
    net.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        total, count = 0.0, 0
        for start in range(0, len(images), BATCH):
            rows = order[start : start + BATCH]
            x = images[rows].float() / 255
            binarise = torch.rand(len(rows), 1, 1, 1, generator=generator) < 0.5
            x = torch.where(binarise, (torch.rand(x.shape, generator=generator) < x).float(), x)
            loss = F.cross_entropy(net(x), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, count = total + loss.item() * len(rows), count + len(rows)
        log(f"judge epoch {epoch + 1}/{epochs}: cross-entropy {total / count:.4f}")
    judge = Judge(net, None)
    gray = torch.from_numpy(test_images).float() / 255
    binary = (torch.rand(gray.shape, generator=torch.Generator().manual_seed(0)) < gray).float()
    targets = torch.from_numpy(test_labels.astype(np.int64))
    accuracy = [(judge.read(x)[0].argmax(-1) == targets).double().mean().item() for x in (gray, binary)]
    judge.record = JudgeRecord(dataset, fingerprint(train_images, train_labels, test_images, test_labels), seed,
                               epochs, JUDGE_VERSION, accuracy[0], accuracy[1], time.perf_counter() - started)
    return judge


def save_judge(judge: Judge, path: Path) -> None:
    """The judge's weights and record in one safetensors file (written atomically), and the record as JSON beside it."""
    record = asdict(judge.record)
    tensors = {name: value.detach().cpu().contiguous() for name, value in judge.net.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"judge": json.dumps(record)}))
    atomic_write_bytes(path.with_suffix(".json"), (json.dumps(record, indent=2) + "\n").encode())


def load_judge(path: Path, expected: dict, channels: int, num_classes: int) -> Judge | None:
    """The judge cached at `path` if its record matches `expected` (dataset, fingerprint, seed, epochs,
    version) and its weights fit; None otherwise (a missing, damaged or stale file: train again)."""
    try:
        data = path.read_bytes()
        tensors = load(data)
        header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        record = JudgeRecord(**json.loads(header["__metadata__"]["judge"]))
    except (OSError, ValueError, KeyError, TypeError, SafetensorError):
        return None
    if any(getattr(record, name) != value for name, value in expected.items()):
        return None
    net = JudgeNet(channels, num_classes)
    try:
        net.load_state_dict(tensors)
    except RuntimeError:
        return None
    return Judge(net.eval(), record)
