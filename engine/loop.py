"""What the training loops use each epoch: the batches with a progress display, and the sums of losses and
correct predictions, kept on the device (no step waits for the host), in the first version's order."""
import math
import time

import torch
from tqdm import tqdm

from core.errors import UserError

LOG_EVERY = 20  # steps between reads of the running loss (one host sync), on a terminal's bar
PROGRESS_SHARES = 10  # without a terminal (a log): a line per tenth of an epoch


def on_device(loader, accel):
    for images, targets in loader:
        yield accel.inputs(images, targets)


def check_finite(values, epoch):
    if not all(math.isfinite(v) for v in values):
        raise UserError(f"the loss became non-finite in epoch {epoch}; no checkpoint was written from it: lower "
                        f"the learning rate or check the data")


def all_finite(tensors):
    """Whether every element of `tensors` is finite, in a few fused launches rather than two per tensor:
    0 * x is 0 where x is finite and NaN where it is not, and a sum keeps any NaN (a max may not)."""
    tensors = [t.detach() for t in tensors]
    if not tensors:
        return True
    return bool(torch.stack(torch._foreach_norm(torch._foreach_mul(tensors, 0.0), 1)).isfinite().all())


def batches(loader, accel, epoch, sums):
    """The training batches of `epoch` on the device, with rank 0's progress; each read checks the loss is finite."""
    steps = len(loader)
    bar = tqdm(on_device(loader, accel), desc=f"epoch {epoch}", total=steps, leave=False,
               disable=None if accel.is_main else True)
    shares = range(1, PROGRESS_SHARES + 1) if accel.is_main and bar.disable else ()  # no terminal: log lines
    marks = {math.ceil(steps * k / PROGRESS_SHARES) for k in shares} - {0}  # the first step at or past each tenth
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
    """The epoch's float64 sums of each batch's losses and of correct predictions, and the images seen."""

    def __init__(self, accel, count):
        self.accel, self.steps, self.seen = accel, 0, 0
        self.sums = torch.zeros(count + 1, device=accel.device, dtype=torch.float64)  # losses..., correct

    def add(self, *losses, predicted, targets):
        self.sums += torch.stack([*(loss.detach().double() for loss in losses), (predicted == targets).sum().double()])
        self.steps += 1
        self.seen += len(targets)

    def running(self):
        """(mean loss, accuracy %) so far on this rank: one read from the device."""
        values = self.sums.tolist()
        return values[0] / self.steps, 100 * values[-1] / self.seen

    def means(self, epoch):
        """([each loss's mean over the epoch's batches], accuracy %) over all ranks; refuses a non-finite loss."""
        *losses, correct, seen = self.accel.sum(torch.cat([self.sums, self.sums.new_full((1,), self.seen)])).tolist()
        check_finite(losses, epoch)
        return [loss / (self.steps * self.accel.world) for loss in losses], 100.0 * correct / seen


class BatchMeans:
    """Validation: each batch's losses and correct predictions; `means`: as TrainSums's (Accel.batch_means)."""

    def __init__(self, accel):
        self.accel, self.losses, self.counts = accel, [], []
        self.correct = torch.zeros((), device=accel.device, dtype=torch.float64)

    def add(self, *losses, predicted, targets):
        self.losses.append(torch.stack([loss.double() for loss in losses]))
        self.counts.append(len(targets))  # host ints: one tensor in `means`, not a launch per batch
        self.correct += (predicted == targets).sum()

    def means(self):
        counts = self.correct.new_tensor(self.counts)  # float64, on the device
        losses = self.accel.batch_means(torch.stack(self.losses), counts).tolist()
        correct, seen = self.accel.sum(torch.stack([self.correct, counts.sum()])).tolist()
        return losses, 100.0 * correct / seen
