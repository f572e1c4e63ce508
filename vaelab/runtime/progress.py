"""Progress bars: tqdm's, as a notebook's widget inside Jupyter (where ipywidgets is installed), else text on stderr."""

from __future__ import annotations


def progress_bar() -> type:
    """The tqdm class to draw progress with here: `tqdm.notebook.tqdm` in a Jupyter kernel that has
    ipywidgets, else the terminal's `tqdm.tqdm` (also in a notebook without ipywidgets, where
    tqdm.auto would fall back to it with a warning)."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is not None and "IPKernelApp" in shell.config:
            import ipywidgets  # noqa: F401
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm
    except ImportError:
        pass
    from tqdm import tqdm

    return tqdm
