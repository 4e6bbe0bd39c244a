"""engine.training without training: the argument checks made before anything else, and
TrainingRun's helpers (epoch range, optimizer, file names, checkpoint copies, the log line) on a
run whose set-up (device, data, loaders) is skipped. Whole runs: tests/e2e/."""
import json
import os
from argparse import Namespace

import pytest
import torch

from core.errors import UserError
from engine.recipe import phase_schedule
from engine import continuing
from engine.run_files import check_training_args
from engine.training import TrainingRun
from networks.config import NetworkConfig


def training_args(**change):
    return Namespace(**{"dataset": "Digits", "trial": 0, "name": "x", "workers": 0, "seed": 0, "epochs": None,
                        "overwrite": False, "continue_run": False, "resume": False, "backbone": "cnn", "recipe": "paper", "lr": None,
                        **change})


def test_check_training_args_accepts_a_plain_run():
    assert check_training_args(training_args(), "CAC") is None
    assert check_training_args(training_args(epochs=1, overwrite=True), "CAC") is None
    assert check_training_args(training_args(continue_run=True, resume=True), "CAC") is None


@pytest.mark.parametrize("change,fragment", [
    ({"epochs": 0}, "--epochs 0: give a positive number of epochs"),
    ({"epochs": -2}, "--epochs -2"),
    ({"overwrite": True, "continue_run": True}, "give one of them"),
    ({"name": "../x"}, "--name '../x' contains '/'"),  # the common checks come first
    ({"seed": -1}, "--seed -1"),
    ({"dataset": "Nope"}, "unknown dataset 'Nope'"),
    ({"lr": 0.0}, "--lr 0.0: give a positive, finite learning rate"),
    ({"lr": float("nan")}, "--lr nan"),
])
def test_check_training_args_refusals(change, fragment):
    with pytest.raises(UserError) as refused:
        check_training_args(training_args(**change), "CAC")
    assert fragment in str(refused.value)


HPARAMS = {"learning_rate": [0.01, 0.001], "max_epoch": [20, 10], "weight_decay": 5e-06, "momentum": 0.8}
CFG = {"num_known_classes": 6, "im_channels": 1, "im_size": 16, "dropout": 0.2, "batch_size": 32}


def bare_run(is_main=True, resume=False, **change):
    """A TrainingRun with the attributes its __init__ sets, without the device, data and loaders."""
    run = TrainingRun.__new__(TrainingRun)
    run.args = training_args(resume=resume, **change)
    run.method, run.phase, run.hparams, run.cfg = "CAC", int(resume), dict(HPARAMS), CFG
    run.script = "train_cacOpenset.py"
    run.run_dir = os.path.join("runs", f"{run.args.dataset}_0_xCAC")
    run.log = os.path.join(run.run_dir, "metrics.jsonl")
    run.is_main, run.writer, run.first_run = is_main, None, None
    return run


def test_lr_replaces_the_rate_of_its_phase_only():
    assert phase_schedule(HPARAMS, 0) == HPARAMS  # default: the config's schedule
    assert phase_schedule(HPARAMS, 0, 0.5)["learning_rate"] == [0.5, 0.001]
    assert phase_schedule(HPARAMS, 1, 0.5)["learning_rate"] == [0.01, 0.5]
    assert HPARAMS["learning_rate"] == [0.01, 0.001]  # the config is not changed in place
    run = bare_run(resume=True)
    run.hparams = phase_schedule(HPARAMS, 1, 0.25)
    assert run.recipe.optimizer(torch.nn.Linear(2, 2).parameters(), 1).param_groups[0]["lr"] == 0.25


@pytest.mark.parametrize("resume,lr", [(False, 0.01), (True, 0.001)])
def test_optimizer_is_sgd_with_the_phases_learning_rate(resume, lr):
    net = torch.nn.Linear(2, 2)
    run = bare_run(resume=resume)
    opt = run.recipe.optimizer(net.parameters(), run.phase)
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["weight_decay"]) == (lr, 0.8, 5e-06)
    run = bare_run()
    del run.hparams["momentum"]
    assert run.recipe.optimizer(net.parameters(), 0).param_groups[0]["momentum"] == 0.9  # the config has none


def test_weights_and_network_config():
    run = bare_run()
    assert run.weights("CACclassifierLast") == os.path.join("networks", "weights", "Digits",
                                                            "Digits_0_xCACclassifierLast.pth")
    assert run.weights("A", dataset="CIFAR+50") == os.path.join("networks", "weights", "CIFAR+50", "CIFAR+50_0_xA.pth")
    assert run.network_config() == NetworkConfig(6, 1, 16, 0.2, "cnn")
    assert bare_run(backbone="wrn-10-1").network_config().backbone == "wrn-10-1"


def test_save_writes_every_copy_on_rank_0_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    state = {"net": {"w": torch.arange(3.0)}, "epoch": 2}
    bare_run(dataset="CIFAR+10").save(state, "CACclassifierAccuracy")
    for dataset in ("CIFAR+10", "CIFAR+50"):
        saved = torch.load(os.path.join("networks", "weights", dataset, f"{dataset}_0_xCACclassifierAccuracy.pth"),
                           weights_only=True)
        assert saved["epoch"] == 2 and torch.equal(saved["net"]["w"], torch.arange(3.0))
    bare_run(is_main=False).save(state, "CACclassifierAccuracy")  # another rank: nothing
    assert not os.path.exists(os.path.join("networks", "weights", "Digits"))


def test_end_epoch_writes_one_rounded_json_line_on_stdout_and_in_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = bare_run()
    monkeypatch.setattr(continuing, "save_last", lambda run, epoch: epoch)
    assert run.log_size() == 0
    os.makedirs(run.run_dir)  # the run's first writes make it
    run.end_epoch(0, {"train/accuracy": 12.3456789, "val/loss": 1 / 3})
    run.end_epoch(1, {"train/accuracy": 50.0, "val/loss": 0.25})
    expected = ['{"epoch": 0, "train/accuracy_percent": 12.345679, "val/loss": 0.333333}',  # the unit in the key:
                '{"epoch": 1, "train/accuracy_percent": 50.0, "val/loss": 0.25}']  # results files hold shares
    assert capsys.readouterr().out.splitlines() == expected
    with open(run.log) as f:
        text = f.read()
    assert text.splitlines() == expected and text.endswith("\n")
    assert [json.loads(line)["epoch"] for line in text.splitlines()] == [0, 1]
    assert run.log_size() == len(text.encode())
    other = bare_run(is_main=False)
    other.end_epoch(2, {"train/accuracy": 1.0})  # another rank: nothing
    assert capsys.readouterr().out == "" and run.log_size() == len(text.encode())


def test_a_first_run_loads_nothing_and_r_needs_the_first_runs_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    net = torch.nn.Linear(2, 2)
    assert bare_run().load_first_run(net) is None
    with pytest.raises(UserError) as refused:
        bare_run(resume=True).load_first_run(net)
    message = str(refused.value)
    assert message.startswith("checkpoint not found: " + os.path.join("networks", "weights", "Digits",
                                                                      "Digits_0_xCACclassifierAnchorLoss.pth"))
    assert message.endswith("the second phase (-r) starts from a first run: train one with "
                            "`python train_cacOpenset.py --dataset Digits --trial 0 --name x`")


def test_r_loads_the_first_runs_evaluated_checkpoint_with_its_weights(tmp_path, monkeypatch):
    from networks.build import build_network
    from networks.checkpoint import save_checkpoint

    monkeypatch.chdir(tmp_path)
    first = build_network(NetworkConfig(6, 1, 16), "CAC", init_weights=True)
    run = bare_run(resume=True)
    save_checkpoint({"net": first.state_dict(), "acc": 40.0, "epoch": 4}, run.weights("CACclassifierAnchorLoss"))
    net = build_network(NetworkConfig(6, 1, 16), "CAC")
    assert run.load_first_run(net)["acc"] == 40.0 and run.first_run["epoch"] == 4
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in first.state_dict().items())


class RecordedAccel:
    """An Accel stand-in on the CPU, one process, that records being closed."""

    closed = []

    def __init__(self, device, *args, **kwargs):
        self.device, self.is_main, self.world = torch.device("cpu"), True, 1

    def close(self):
        RecordedAccel.closed.append(self)

    def all_agree(self, flag):
        return bool(flag)


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    import engine.training as training

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(training, "Accel", RecordedAccel)
    RecordedAccel.closed = []
    return training


def full_args(**change):
    return training_args(device="cpu", amp=False, compile=False, sync_bn=False, tf32=False, **change)


def test_a_refusal_after_the_device_is_open_leaves_the_process_group(recorded, monkeypatch):
    def no_data(self):
        raise UserError("no data")

    monkeypatch.setattr(recorded.TrainingRun, "_load_trial", no_data)
    with pytest.raises(UserError, match="no data"):
        recorded.TrainingRun(full_args(), "CAC")
    assert len(RecordedAccel.closed) == 1


def skip_set_up(monkeypatch, training):
    for step in ("_load_trial", "_build_loaders"):
        monkeypatch.setattr(training.TrainingRun, step, lambda self, *a: None)
    monkeypatch.setattr(training, "check_writable", lambda *a: None)
    monkeypatch.setattr(training, "summary_line", lambda data: "data: (set-up skipped)")
    monkeypatch.setattr(training.TrainingRun, "data", None, raising=False)  # what _load_trial sets


def test_a_refusal_under_the_lock_closes_everything_and_releases_the_lock(recorded, monkeypatch):
    skip_set_up(monkeypatch, recorded)
    run = recorded.TrainingRun.__new__(recorded.TrainingRun)

    def refuse(*args):
        assert all(lock.lock.is_locked for lock in run.locks)  # checked once, under the lock
        raise UserError("refused")

    monkeypatch.setattr(recorded, "refuse_to_replace", refuse)
    with pytest.raises(UserError, match="refused"):
        run.__init__(full_args(), "CAC")
    assert RecordedAccel.closed == [run.accel] and not any(lock.lock.is_locked for lock in run.locks)


def test_a_run_holds_its_lock_so_a_second_start_is_refused(recorded, monkeypatch):
    """While a run holds its lock, the same run started again (here in the same process: flock is per open
    file), --overwrite or not, is refused before it reads any data, naming the lock; once it has left, it starts."""
    skip_set_up(monkeypatch, recorded)
    with recorded.TrainingRun(full_args(), "CAC") as run:
        assert all(lock.lock.is_locked for lock in run.locks)
        with pytest.raises(UserError, match="is being trained now by another process"):
            recorded.TrainingRun(full_args(overwrite=True), "CAC")
    assert not any(lock.lock.is_locked for lock in run.locks)
    recorded.TrainingRun(full_args(), "CAC").close()


def test_a_stop_by_signal_closes_the_writer_and_the_process_group(recorded, monkeypatch):
    from core.errors import Interrupted

    skip_set_up(monkeypatch, recorded)
    closed = []

    class Writer:
        def close(self):
            closed.append(self)

    with pytest.raises(Interrupted) as stopped:
        with recorded.TrainingRun(full_args(overwrite=True), "CAC", ["--dataset", "Digits", "--overwrite"]) as run:
            run.writer = Writer()
            run.epochs, run.epoch, run.saved_epoch = range(0, 5), 3, 3
            raise Interrupted("SIGTERM", 143)
    assert len(closed) == 1 and run.writer is None and RecordedAccel.closed == [run.accel]
    assert stopped.value.exit_status == 143
    assert str(stopped.value) == (f"SIGTERM in epoch 3; {run.last} holds the run after epoch 2: continue it with "
                                  f"`python train_cacOpenset.py --dataset Digits --continue`")
