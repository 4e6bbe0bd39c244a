"""datasets/classnames.py: the names a message gives classes, by data set kind."""
from types import SimpleNamespace

from datasets.classnames import describe_classes, source_class_names


def test_source_class_names_use_the_data_sets_own_list_else_the_ids():
    assert source_class_names(SimpleNamespace(classes=["cat", "dog", "owl"]), 3) == ["cat", "dog", "owl"]
    assert source_class_names(SimpleNamespace(), 3) == ["0", "1", "2"]  # Digits, SVHN: no names
    assert source_class_names(SimpleNamespace(classes=["a", "b"]), 3) == ["0", "1", "2"]  # not one per id


def test_describe_classes_names_and_split_file_ids():
    names = ["0 - zero", "1 - one", "2"]
    assert describe_classes([1, 2], names) == "'1 - one' (id 1), 2"
    assert describe_classes([2, 0], ["cat", "dog", "owl"], by_name=True) == "'owl', 'cat'"
