"""The yardstick of semi-supervised learning: a family's classifier q(y | x) trained on the labelled
images alone, by cross-entropy, so that what the unlabelled images add can be measured against it
at an equal number of steps (benchmarks/semi_supervised.py, tests/test_adgm.py)."""

from __future__ import annotations

import torch

from ..config import TrainConfig
from ..data import labelled_subset, load_raw, make_splits
from ..models import Model
from ..runs import new_model


def labels_alone(config: TrainConfig, steps: int, batch_size: int = 128) -> Model:
    """A freshly initialised model of `config` (seed config.seed) whose classifier q(y | x) has
    been trained on the config's labelled images only (config.labels images drawn with
    config.label_seed, as training draws them): `steps` Adam steps at config.lr on the mean
    cross-entropy (nats per image) of up to `batch_size` of them, drawn with replacement, freshly
    binarised each time where config.binarize is dynamic, or their gray levels where q reads them
    (config.encoder_input grayscale). On the CPU, in eval mode."""
    splits = make_splits(load_raw(config.dataset, data_dir=config.data_dir), config.binarize)
    chosen = labelled_subset(splits.train.labels, config.labels, splits.num_classes, config.label_seed)
    gray = config.encoder_input == "grayscale"
    x = torch.from_numpy((splits.train.gray_images() if gray else splits.train.float_images())[chosen])
    y = torch.from_numpy(splits.train.labels[chosen])
    torch.manual_seed(config.seed)
    model = new_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    model.train()
    for _ in range(steps):
        batch = torch.randint(len(x), (min(batch_size, len(x)),), generator=generator)
        dynamic = config.binarize == "dynamic" and not gray
        images = torch.bernoulli(x[batch], generator=generator) if dynamic else x[batch]
        loss = torch.nn.functional.cross_entropy(model.classifier(images).logits, y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
