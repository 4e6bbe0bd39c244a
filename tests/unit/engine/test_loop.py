"""engine.loop: the epoch's sums equal the formulas written out, progress is shown without a host
read per step, and a non-finite loss stops the run."""
from types import SimpleNamespace

import pytest
import torch

from core.errors import UserError
from engine import loop
from engine.accel import Accel

CPU = torch.device("cpu")


@pytest.fixture
def accel(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    return Accel(CPU)


def batches_of(n, sizes, seed=0):
    """(losses of each of n batches, predicted, targets) drawn at random."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(n, generator=g, dtype=torch.float64), torch.randint(0, 3, (size,), generator=g),
             torch.randint(0, 3, (size,), generator=g)) for size in sizes]


def test_train_sums_give_the_mean_of_the_batch_losses_and_the_accuracy(accel):
    data = batches_of(2, [4, 4, 3])
    sums = loop.TrainSums(accel, 2)
    for losses, predicted, targets in data:
        sums.add(*losses, predicted=predicted, targets=targets)
    means, accuracy = sums.means(epoch=0)
    for i in range(2):
        assert means[i] == pytest.approx(sum(float(b[0][i]) for b in data) / 3)
    correct = sum(int((b[1] == b[2]).sum()) for b in data)
    assert accuracy == pytest.approx(100 * correct / 11) and sums.seen == 11 and sums.steps == 3


def test_batch_means_give_the_mean_over_batches_not_images(accel):
    data = batches_of(1, [4, 1])
    means = loop.BatchMeans(accel)
    for losses, predicted, targets in data:
        means.add(*losses, predicted=predicted, targets=targets)
    (loss,), accuracy = means.means()
    assert loss == pytest.approx((float(data[0][0][0]) + float(data[1][0][0])) / 2)  # not weighted by batch size
    assert accuracy == pytest.approx(100 * sum(int((b[1] == b[2]).sum()) for b in data) / 5)


def test_a_non_finite_loss_stops_the_run_at_the_epochs_end(accel):
    sums = loop.TrainSums(accel, 1)
    sums.add(torch.tensor(float("nan")), predicted=torch.zeros(2), targets=torch.zeros(2))
    with pytest.raises(UserError, match="the loss became non-finite in epoch 4; no checkpoint was written"):
        sums.means(epoch=4)


class CountingSums(loop.TrainSums):
    """TrainSums that count their reads from the device."""

    def __init__(self, accel):
        super().__init__(accel, 1)
        self.reads = 0

    def running(self):
        self.reads += 1
        return super().running()


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_without_a_terminal_is_a_line_per_tenth_and_never_a_read_per_step(terminal, accel, capsys,
                                                                                    monkeypatch):
    if terminal:
        real = loop.tqdm
        monkeypatch.setattr(loop, "tqdm", lambda it, **kw: real(it, **{**kw, "disable": False}))
    steps, batch = 45, (torch.zeros(4, 1), torch.zeros(4, dtype=torch.int64))
    sums = CountingSums(accel)
    for images, targets in loop.batches([batch] * steps, accel, 3, sums):
        sums.add(torch.tensor(2.0), predicted=targets, targets=targets)  # each step's loss: the mean is 2.0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch 3:")]
    if terminal:
        assert lines == [] and sums.reads == steps // loop.LOG_EVERY
        return
    tenths = sorted({-(-steps * k // 10) for k in range(1, 11)})  # ceil(45 k / 10)
    assert [line.split("(")[1].split(" steps")[0] for line in lines] == [f"{m}/{steps}" for m in tenths]
    assert all(", loss 2.0000, " in line and line.endswith(" images/s") for line in lines)
    assert lines[-1].startswith("epoch 3: 100% ") and sums.reads == len(tenths) < steps


def test_only_rank_0_shows_progress(capsys):
    other = SimpleNamespace(is_main=False, world=2, inputs=lambda x, y: (x, y))
    sums = SimpleNamespace(running=lambda: pytest.fail("a rank other than 0 read its sums"))
    assert len(list(loop.batches([(torch.zeros(1), torch.zeros(1))] * 12, other, 0, sums))) == 12
    assert capsys.readouterr().out == ""


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_all_finite_finds_one_bad_weight_anywhere(device):
    from engine.loop import all_finite

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2)).to(device)
    params = list(net.parameters())
    assert all_finite(params) and all_finite([])
    with torch.no_grad():
        params[-1].fill_(3e38)  # huge but finite: a sum of the weights themselves would overflow
        params[0].fill_(-3e38)
    assert all_finite(params)
    for index, position in ((0, (1, 2, 0, 1)), (4, (1, 2)), (len(params) - 1, (1,))):
        for bad in (float("inf"), float("-inf"), float("nan")):
            with torch.no_grad():
                saved = params[index][position].item()
                params[index][position] = bad
            assert not all_finite(params), (index, bad)  # the per-tensor check it replaces, written out:
            assert not all(bool(torch.isfinite(p).all()) for p in params)
            with torch.no_grad():
                params[index][position] = saved
    assert all_finite(params)
