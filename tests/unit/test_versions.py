"""The declared versions (docs/testing.md, "Versions"): requirements.txt and cac.yml give the same lower bounds,
cac.yml takes PyTorch from a channel that still receives releases, and the README's Python is the files'."""
import os
import re

from conftest import REPO


def bounds(path, pattern):
    with open(os.path.join(REPO, path)) as f:
        return dict(re.findall(pattern, f.read(), flags=re.MULTILINE))


def test_requirements_and_cac_yml_declare_the_same_lower_bounds():
    pip = bounds("requirements.txt", r"^([A-Za-z][\w-]*)>=([\d.]+)")
    conda = bounds("cac.yml", r"^  - ([A-Za-z][\w-]*)>=([\d.]+)")
    assert pip.pop("torch") == conda.pop("pytorch")
    names = {"Pillow": "pillow", "tensorboardX": "tensorboardx"}
    assert {names.get(k, k): v for k, v in pip.items()} == {k: v for k, v in conda.items() if k != "python"}
    with open(os.path.join(REPO, "requirements.txt")) as f:
        python = re.search(r"Python >= ([\d.]+)", f.read()).group(1)
    assert conda["python"] == python
    with open(os.path.join(REPO, "README.md")) as f:
        assert f"Python >= {python}" in f.read()


def test_cac_yml_uses_conda_forge_alone():
    with open(os.path.join(REPO, "cac.yml")) as f:
        text = f.read()
    channels = re.search(r"^channels:\n((?:  - .*\n)+)", text, flags=re.MULTILINE).group(1)
    assert channels.split() == ["-", "conda-forge"]
