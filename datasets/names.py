"""The data set names `--dataset` accepts (DATASET_NAMES): the built-in sources and users' own
image folders. Imports nothing: the scripts' parsers read it before torch is loaded."""

# data set name -> (source of the known classes, source of the unknown classes)
SOURCES = {
    "MNIST": ("MNIST", "MNIST"), "SVHN": ("SVHN", "SVHN"), "CIFAR10": ("CIFAR10", "CIFAR10"),
    "CIFAR+10": ("CIFAR10", "CIFAR100"), "CIFAR+50": ("CIFAR10", "CIFAR100"),
    "TinyImageNet": ("TinyImageNet", "TinyImageNet"), "Digits": ("Digits", "Digits"),
    "FashionMNIST": ("FashionMNIST", "FashionMNIST"),
}
FOLDER_DATASET = "ImageFolder"  # the --dataset name of users' own data
DATASET_NAMES = (*SOURCES, FOLDER_DATASET)
