"""tests/unit/datasets/test_partition.py's check on TinyImageNet: its 100,000 training files are written
and listed through torchvision's ImageFolder, seconds to a minute of file-system work, so it runs here."""
from tests.unit.datasets.test_partition import check_partition_is_the_original_files, protocol  # noqa: F401


def test_tinyimagenet_partition_is_the_original_files(protocol, tmp_path, private_cache):  # noqa: F811
    check_partition_is_the_original_files("TinyImageNet", protocol, tmp_path, private_cache)
