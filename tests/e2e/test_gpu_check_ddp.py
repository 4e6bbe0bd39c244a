"""benchmarks/gpu_check_ddp.py without a GPU: one line and exit 2 unless --dry-run (whose
steps benchmarks/gpu_check.sh's own dry run exercises), and the list of its steps."""
import benchmarks.gpu_check_ddp as check


def test_without_a_gpu_it_asks_for_dry_run(monkeypatch, capsys):
    monkeypatch.setattr(check, "gpu_count", lambda: 0)
    assert check.main([]) == 2
    assert capsys.readouterr().err == "error: no CUDA device: run with --dry-run on a CPU\n"


def test_its_steps_are_the_issues():
    assert list(check.STEPS) == ["collective", "amp-compile", "ddp", "cpu-to-cuda", "cuda-to-cpu"]


def test_a_step_that_fails_is_reported_and_counted(monkeypatch, capsys, tmp_path):
    import subprocess

    def fails(args, work, cuda):
        return [subprocess.CompletedProcess([], 2, "", "Traceback\nerror: something broke\n")]

    monkeypatch.setattr(check, "STEPS", {"amp-compile": fails, "ddp": lambda *a: []})
    assert check.main(["--dry-run", "--work", str(tmp_path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "FAIL amp-compile: exit 2: error: something broke" and out[1].startswith("ok ddp ")


def test_on_one_gpu_the_two_rank_nccl_step_says_it_cannot_run(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(check, "gpu_count", lambda: 1)
    monkeypatch.setattr(check, "STEPS", {"ddp": check.ddp})
    assert check.main(["--work", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("skip ddp: NCCL with 2 ranks cannot run on this machine's 1 GPU"), line
