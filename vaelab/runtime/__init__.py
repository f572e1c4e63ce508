"""The runtime wing: how a command runs, not what it computes.

    files.py        atomic writes: a file is the old one or the new one, never half of either
    devices.py      resolve_device, and DeviceSplit: a split of images as tensors on the device
    processes.py    a group of processes (torchrun): who computes which rows, sums, agreement on errors
    compilation.py  torch.compile with an eager fallback: the same numbers, faster
    precision.py    float32, bf16 or tf32 for the networks' products
    cpu_share.py    sharing the CPUs with other programs and vaelab commands (thread counts)
    progress.py     progress bars: a notebook's widget in Jupyter, text on stderr elsewhere

Nothing here knows a model, a bound or a run directory.
"""
