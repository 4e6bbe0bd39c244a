"""What the training scripts' loops use each epoch, kept out of their way: the batches on the
device with a progress display (`batches`), and the running sums of the losses and correct
predictions (`TrainSums` for training, `BatchMeans` for validation), kept on the device so that
no step waits for the host. Both sums add up as they did from the first version, so the logged
numbers are the same bit for bit.
"""
import math
import time

import torch
from tqdm import tqdm

from core.errors import UserError

LOG_EVERY = 20  # steps between reads of the running loss (one host sync), on a terminal's bar
PROGRESS_SHARES = 10  # without a terminal (a log): a line per tenth of an epoch


def on_device(loader, accel):
    """The batches of `loader` on the run's device in the network's memory format."""
    for images, targets in loader:
        yield accel.inputs(images, targets)


def progress_marks(steps, shares=PROGRESS_SHARES):
    """The steps (from 1) after which a log line reports progress: the first at or past each tenth."""
    return sorted({math.ceil(steps * k / shares) for k in range(1, shares + 1)} - {0})


def check_finite(values, epoch):
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"the loss became non-finite in epoch {epoch}; no checkpoint was written from it: lower "
                        f"the learning rate or check the data")


def batches(loader, accel, epoch, sums):
    """The training batches of `epoch` on the device. Rank 0 shows progress: on a terminal a tqdm
    bar with the running loss and accuracy, read every LOG_EVERY steps; in a log a line per tenth
    of the epoch. Each read also checks that the loss is still finite."""
    steps = len(loader)
    bar = tqdm(on_device(loader, accel), desc=f"epoch {epoch}", total=steps, leave=False,
               disable=None if accel.is_main else True)
    marks = set(progress_marks(steps)) if accel.is_main and bar.disable else set()
    began = time.perf_counter()
    for step, batch in enumerate(bar, start=1):
        yield batch
        if (not bar.disable and step % LOG_EVERY == 0) or step in marks:
            loss, accuracy = sums.running()
            check_finite([loss], epoch)
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{accuracy:.1f}")
            if step in marks:
                rate = sums.seen * accel.world / max(time.perf_counter() - began, 1e-9)
                print(f"epoch {epoch}: {100 * step // steps}% ({step}/{steps} steps), loss {loss:.4f}, "
                      f"{rate:.0f} images/s", flush=True)


class TrainSums:
    """The epoch's sums of each batch's losses and of correct predictions (float64, on the device),
    and the images seen; `means` gives the epoch's mean losses and accuracy (%) over all ranks."""

    def __init__(self, accel, count):
        self.accel, self.steps, self.seen = accel, 0, 0
        self.sums = torch.zeros(count + 1, device=accel.device, dtype=torch.float64)  # losses..., correct

    def add(self, *losses, predicted, targets):
        self.sums += torch.stack([*(loss.detach().double() for loss in losses), (predicted == targets).sum().double()])
        self.steps += 1
        self.seen += len(targets)

    def running(self):
        """(mean loss so far, accuracy so far in %) of this rank: one read from the device."""
        values = self.sums.tolist()
        return values[0] / self.steps, 100 * values[-1] / self.seen

    def means(self, epoch):
        """([each loss's mean over the epoch's batches], accuracy %), over all ranks; a loss that
        became non-finite in `epoch` stops the run before any checkpoint is written from it."""
        *losses, correct, seen = self.accel.sum(torch.cat([self.sums, self.sums.new_full((1,), self.seen)])).tolist()
        check_finite(losses, epoch)
        return [loss / (self.steps * self.accel.world) for loss in losses], 100.0 * correct / seen


class BatchMeans:
    """Validation: each batch's losses and correct predictions; `means` gives the mean over
    batches of each loss and the accuracy (%), over all ranks (engine/accel.py batch_means)."""

    def __init__(self, accel):
        self.accel, self.losses, self.counts = accel, [], []
        self.correct = torch.zeros((), device=accel.device, dtype=torch.float64)

    def add(self, *losses, predicted, targets):
        self.losses.append(torch.stack([loss.double() for loss in losses]))
        self.counts.append(torch.full((), len(targets), device=self.accel.device, dtype=torch.float64))
        self.correct += (predicted == targets).sum()

    def means(self):
        losses = self.accel.batch_means(torch.stack(self.losses), torch.stack(self.counts)).tolist()
        correct, seen = self.accel.sum(torch.stack([self.correct, sum(self.counts)])).tolist()
        return losses, 100.0 * correct / seen
