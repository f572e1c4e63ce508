"""`python -m tests.per_image RUN OUT.npz IMAGES`: the per-image figures of a run's first IMAGES test
images, written to OUT.npz in float64: the ELBO (one draw), log p(x | y) by importance sampling
(K = 20) and, for a class-conditional model, log p(x | y) for every class (K = 20). Each batch of
100 images draws from its own generator, as `vaelab evaluate` does.

Run under another thread count or other CPU kernels, it shows how far float32 rounding alone moves
each image's figures (tests/test_any_cpu.py).
"""

import sys

import numpy as np
import torch

import vaelab
from vaelab import inference
from vaelab.inference.batches import chunk_generator
from vaelab.models import class_conditional
from vaelab.runtime.cpu_share import hold_thread_count

BATCH = 100
SAMPLES = 20


@torch.no_grad()
def per_image(run: vaelab.Run, images: int) -> dict[str, np.ndarray]:
    model, test = run.model.eval(), run.test_data()
    figures = {"elbo": [], "log_likelihood": [], "per_class": []}
    for batch in range(images // BATCH):
        x, y = test.x[batch * BATCH:(batch + 1) * BATCH], test.y[batch * BATCH:(batch + 1) * BATCH]
        generator = chunk_generator(0, batch, "cpu")
        noise = inference.draw_noise(model, 1, BATCH, generator, "cpu")
        figures["elbo"].append(inference.elbo(model, x, y, noise).bound)
        figures["log_likelihood"].append(inference.log_likelihood_is(model, x, y, SAMPLES, generator, 40))
        if class_conditional(model):
            figures["per_class"].append(inference.log_likelihood_per_class(model, x, SAMPLES, generator, 40))
    return {name: torch.cat(values).double().numpy() for name, values in figures.items() if values}


if __name__ == "__main__":
    hold_thread_count()
    run_path, out, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    np.savez(out, **per_image(vaelab.load_run(run_path, device="cpu"), count))
