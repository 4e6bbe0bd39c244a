"""What the scripts need to define their functions without importing torch: they import it
after parsing their arguments, so that `--help` and usage errors answer at once."""
import functools


def no_grad(function):
    """`@torch.no_grad()` whose torch is imported when `function` first runs, not when it is defined."""
    @functools.wraps(function)
    def without_gradients(*args, **kwargs):
        import torch

        with torch.no_grad():
            return function(*args, **kwargs)
    return without_gradients
