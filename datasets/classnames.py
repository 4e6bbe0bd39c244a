"""Class names of a data set, for every line that names a class: a folder's class folder names,
a torchvision data set's `classes` (MNIST "3 - three", CIFAR-10 "cat", TinyImageNet's wnids), or,
where the data set has none (Digits, SVHN), the class id as text."""


def source_class_names(dataset, num_classes):
    """The name of each class id 0..num_classes-1 of an opened raw data set (its `classes` list
    when it has one of that length), else the ids as text."""
    names = getattr(dataset, "classes", None)
    if isinstance(names, (list, tuple)) and len(names) == num_classes:
        return [str(n) for n in names]
    return [str(c) for c in range(num_classes)]


def describe_classes(ids, names, by_name=False):
    """'cat' (id 3), 'dog' (id 5): classes named as a message shows them, with the id as the split
    file has it (a class whose name is its id: the id alone); `by_name` (image folders, whose
    split files list names): the names alone."""
    if by_name:
        return ", ".join(repr(names[c]) for c in ids)
    return ", ".join(str(c) if names[c] == str(c) else f"{names[c]!r} (id {c})" for c in ids)
