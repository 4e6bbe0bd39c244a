"""What a log shows of an epoch in progress when stdout is not a terminal (a log file, a batch
job): a line at each tenth of the epoch, read at the loop's own sync points (engine/state.py)."""
import math

PROGRESS_SHARES = 10  # a progress line per tenth of an epoch


def progress_marks(steps, shares=PROGRESS_SHARES):
    """The steps (from 1) after which a log line reports progress: the first at or past each
    `shares`-th of an epoch of `steps` batches (fewer when the epoch has fewer batches)."""
    return sorted({math.ceil(steps * k / shares) for k in range(1, shares + 1)} - {0})


def progress_line(epoch, step, steps, loss, images, seconds):
    """One line of progress in a log: share done, steps, the epoch's mean loss so far, speed."""
    rate = images / seconds if seconds > 0 else float("inf")
    return (f"epoch {epoch}: {100 * step // steps}% ({step}/{steps} steps), loss {loss:.4f}, "
            f"{rate:.0f} images/s")
