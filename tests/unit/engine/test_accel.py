"""engine.accel: one process on a CPU (sums, batch means, autocast, memory format, prepare), the
speed flags, and the refusals made before any process group is joined."""
import datetime
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import engine.accel as accel
from core.errors import UserError
from engine.accel import Accel, default_channels_last
from engine.cli import accel_parser

CPU = torch.device("cpu")


@pytest.fixture
def one_process(monkeypatch):
    """No torchrun variables: a plain single-process run."""
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def test_one_process_is_rank_0_of_1(one_process):
    a = Accel(CPU)
    assert (a.world, a.rank, a.shard, a.is_main) == (1, 0, (0, 1), True)
    assert a.device == CPU


def test_rank_and_world_come_from_torchrun_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    joined = []
    monkeypatch.setattr(accel.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(accel.dist, "init_process_group", lambda backend, timeout: joined.append((backend, timeout)))
    a = Accel(CPU)
    assert (a.world, a.rank, a.shard, a.is_main) == (4, 3, (3, 4), False)
    # CPU processes join over gloo, waiting an hour for collectives (rank 0's set-up: engine/accel.py)
    assert joined == [("gloo", datetime.timedelta(hours=1))]


def test_sum_with_one_process_is_the_tensor_itself(one_process):
    t = torch.tensor([1.5, -2.0, 3.0])
    assert Accel(CPU).sum(t) is t
    assert t.tolist() == [1.5, -2.0, 3.0]


def test_batch_means_with_one_process_is_the_plain_mean(one_process):
    means = torch.tensor([[1.0, 10.0], [2.0, 20.0], [6.0, 0.0]], dtype=torch.float64)
    counts = torch.tensor([4.0, 4.0, 1.0], dtype=torch.float64)  # slice sizes play no part with one process
    got = Accel(CPU).batch_means(means, counts)
    assert got.tolist() == [(1 + 2 + 6) / 3, (10 + 20 + 0) / 3]


def test_batch_means_over_two_ranks_equal_the_means_of_whole_batches(one_process, monkeypatch):
    """Rank 0's view of two ranks, each holding a slice of every global batch (slices of unequal
    size): the result is the mean over batches of each whole batch's mean, computed here in
    numpy from the whole batches."""
    rng = np.random.default_rng(0)
    sizes = [(3, 5), (4, 4), (1, 2)]  # (rank 0's, rank 1's) slice of each of 3 batches
    batches = [rng.normal(size=(a + b, 2)) for a, b in sizes]
    expected = np.mean([batch.mean(0) for batch in batches], axis=0)

    def slices(rank):
        parts = [batch[:a] if rank == 0 else batch[a:] for batch, (a, _) in zip(batches, sizes)]
        return (torch.tensor(np.stack([p.mean(0) for p in parts])),
                torch.tensor([float(len(p)) for p in parts], dtype=torch.float64))

    (means0, counts0), (means1, counts1) = slices(0), slices(1)
    other = {2: means1 * counts1.unsqueeze(1), 1: counts1}  # what rank 1 contributes to each sum

    def all_reduce(tensor):
        tensor += other[tensor.dim()]

    monkeypatch.setattr(accel.dist, "all_reduce", all_reduce)
    a = Accel(CPU)
    a.world = 2
    got = a.batch_means(means0, counts0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    # the plain mean of rank 0's slice means is not it: the test tells the two apart
    assert not np.allclose(means0.mean(0).numpy(), expected)


class Probe(torch.nn.Module):
    """Returns (its matmul's dtype as a float tensor, the product, a float64 tensor)."""

    def forward(self, x):
        y = x @ x
        self.dtype = y.dtype
        return y, x.double()


def test_inference_is_the_module_itself_without_amp(one_process):
    probe = Probe()
    assert Accel(CPU).inference(probe) is probe


def test_with_amp_the_module_runs_in_bfloat16_and_gives_float32_back(one_process):
    """--amp: the forward under bfloat16 autocast; its bfloat16 outputs come back as float32 (the loss
    outside is then computed as autocast's float32 list would), float64 ones as they are."""
    probe, x = Probe(), torch.randn(4, 4)
    y, d = Accel(CPU, amp=True).inference(probe)(x)
    assert probe.dtype == torch.bfloat16 and y.dtype == torch.float32 and d.dtype == torch.float64
    torch.testing.assert_close(y, (x.bfloat16() @ x.bfloat16()).float())
    assert (x @ x).dtype == torch.float32  # autocast only inside the module
    _, model = Accel(CPU, amp=True).prepare(torch.nn.Linear(4, 2))
    assert model(x).dtype == torch.float32 and isinstance(model, torch.nn.Module)


@pytest.mark.parametrize("device,expected", [("cpu", True), ("cuda", True), ("meta", False), ("mps", False)])
def test_default_channels_last(device, expected):
    assert default_channels_last(torch.device(device)) is expected


def test_channels_last_follows_the_device_unless_given(one_process):
    assert Accel(CPU).channels_last is True
    assert Accel(CPU, channels_last=False).channels_last is False


def test_inputs_gives_channels_last_4d_batches_with_the_same_values(one_process):
    images = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 4, 5)
    targets = torch.tensor([1, 0])
    x, y = Accel(CPU).inputs(images, targets)
    assert x.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous(
        memory_format=torch.channels_last)
    assert torch.equal(x, images) and torch.equal(y, targets)
    x, _ = Accel(CPU, channels_last=False).inputs(images, targets)
    assert x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
    flat = torch.randn(3, 7)  # not an image batch: left as it is
    x, _ = Accel(CPU).inputs(flat, targets)
    assert torch.equal(x, flat) and x.is_contiguous()


def test_prepare_with_one_process_returns_the_network_twice_in_channels_last(one_process):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    prepared, model = Accel(CPU).prepare(net)
    assert prepared is model  # no DDP, no compile
    assert prepared[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 5, 5)
    expected = torch.relu(torch.nn.functional.conv2d(x, prepared[0].weight, prepared[0].bias))
    torch.testing.assert_close(model(x), expected)


def test_sync_bn_on_cpu_under_torchrun_is_refused_before_joining_a_group(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    joined = []
    monkeypatch.setattr(accel.dist, "init_process_group", lambda *a, **k: joined.append(a))
    with pytest.raises(UserError, match="--sync_bn needs CUDA devices"):
        Accel(CPU, sync_bn=True)
    assert joined == []


def test_sync_bn_in_one_process_is_accepted(one_process):
    assert Accel(CPU, sync_bn=True).sync_bn is True  # no effect, no refusal


def test_compile_on_cpu_without_a_compiler_is_refused(one_process, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++, no c++
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(UserError, match="--compile on CPU needs a C\\+\\+ compiler"):
        Accel(CPU, compile=True)


def test_speed_flags_default_off():
    args = accel_parser().parse_args([])
    assert (args.amp, args.compile, args.sync_bn) == (False, False, False)
    args = accel_parser().parse_args(["--amp", "--compile", "--sync_bn"])
    assert (args.amp, args.compile, args.sync_bn) == (True, True, True)


CUDA = torch.device("cuda")  # only named: nothing below runs on it


def test_compile_on_cuda_without_triton_is_refused_before_joining_a_group(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    joined = []
    monkeypatch.setattr(accel.dist, "init_process_group", lambda *a, **k: joined.append(a))
    real = accel.importlib.util.find_spec
    monkeypatch.setattr(accel.importlib.util, "find_spec", lambda name: None if name == "triton" else real(name))
    with pytest.raises(UserError) as refused:
        Accel(CUDA, compile=True)
    assert str(refused.value).startswith("--compile on CUDA needs Triton (pip install triton")
    assert "drop --compile" in str(refused.value) and "\n" not in str(refused.value) and joined == []


def test_compile_on_cuda_without_a_c_compiler_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(accel.importlib.util, "find_spec", lambda name: object())  # Triton found
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no cc, gcc, clang
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(UserError, match="--compile on CUDA needs a C compiler \\(gcc\\) on PATH"):
        accel.check_compile(CUDA)
    (tmp_path / "cc").write_text("#!/bin/sh\n")
    (tmp_path / "cc").chmod(0o755)
    assert accel.check_compile(CUDA) is None


NEW_API = hasattr(getattr(torch.backends.cudnn, "conv", None), "fp32_precision")  # torch >= 2.9
FLAGS = (torch.backends.cudnn, "allow_tf32"), (torch.backends.cuda.matmul, "allow_tf32")
SETTINGS = ((torch.backends.cudnn.conv, "fp32_precision"), (torch.backends.cuda.matmul, "fp32_precision")) \
    if NEW_API else FLAGS


def precision():
    """(convolutions, matmuls): "tf32" or "ieee", read through whichever API this torch has."""
    if NEW_API:
        return tuple(getattr(owner, name) for owner, name in SETTINGS)
    return tuple("tf32" if getattr(owner, name) else "ieee" for owner, name in FLAGS)


@pytest.fixture
def float32_settings():
    """CUDA's float32 precision settings (both APIs) as they were, put back after the test."""
    saved = [(owner, name, getattr(owner, name)) for owner, name in set(SETTINGS) | set(FLAGS)]
    yield
    for owner, name, value in saved:
        setattr(owner, name, value)


@pytest.mark.parametrize("tf32, expected, said", [(False, "ieee", "float32 exact (no TF32)"),
                                                  (True, "tf32", "float32 TF32")])
def test_tf32_is_set_explicitly_on_cuda_and_said_in_the_header(one_process, float32_settings, tf32, expected,
                                                               said):
    a = Accel(CUDA, tf32=tf32)
    assert precision() == (expected, expected)
    assert a.describe() == f"amp off, compile off, processes 1; {said}"


@pytest.mark.parametrize("tf32", [False, True])
def test_a_torch_without_fp32_precision_gets_the_allow_tf32_flags(one_process, float32_settings, monkeypatch, tf32):
    # torch before 2.9 has no torch.backends.cudnn.conv: the flags it had instead say the same
    monkeypatch.setattr(accel.torch.backends, "cudnn", SimpleNamespace(benchmark=False, allow_tf32=not tf32))
    monkeypatch.setattr(accel.torch.backends.cuda, "matmul", SimpleNamespace(allow_tf32=not tf32))
    Accel(CUDA, tf32=tf32)
    assert accel.torch.backends.cudnn.allow_tf32 is tf32 and accel.torch.backends.cuda.matmul.allow_tf32 is tf32


def test_cpu_runs_leave_the_float32_settings_and_say_nothing_of_tf32(one_process, float32_settings):
    for owner, name in SETTINGS:  # TF32, which a CUDA run without --tf32 would turn off
        setattr(owner, name, "tf32" if NEW_API else True)
    assert Accel(CPU, amp=True).describe() == "amp bfloat16, compile off, processes 1"
    assert precision() == ("tf32", "tf32")


def test_one_process_agrees_with_itself_and_gathers_its_own(one_process):
    a = Accel(CPU)
    assert a.all_agree(True) is True and a.all_agree(0) is False
    assert a.gather({"x": 1}) == [{"x": 1}]


def test_tf32_flag_defaults_off():
    assert accel_parser().parse_args([]).tf32 is False and accel_parser().parse_args(["--tf32"]).tf32 is True
