"""networks/weights.py: the .pth names of SPEC section 3, the CIFAR+50 copy, the lock beside them."""
import os

from networks.weights import (CAC, CAC_ANCHOR_LOSS, CROSS_ENTROPY, CROSS_ENTROPY_BEST, EVALUATED, LAST, RUN_FILES,
                              lock_path, saved_under, trained_on, weights_path)


def test_names_are_the_originals():
    assert weights_path("MNIST", 0, "myTest", CAC_ANCHOR_LOSS) == os.path.join(
        "networks", "weights", "MNIST", "MNIST_0_myTestCACclassifierAnchorLoss.pth")
    assert weights_path("CIFAR+10", 3, "", CROSS_ENTROPY_BEST).endswith(
        os.path.join("CIFAR+10", "CIFAR+10_3_closedSetClassifier.pth"))
    assert set(RUN_FILES[CAC]) == {"CACclassifierAnchorLoss", "CACclassifierCACLoss", "CACclassifierAccuracy",
                                   "CACclassifierLast"}
    assert set(RUN_FILES[CROSS_ENTROPY]) == {"closedSetClassifier", "closedSetClassifierLast"}
    assert EVALUATED == {CAC: "CACclassifierAnchorLoss", CROSS_ENTROPY: "closedSetClassifier"}
    assert LAST == {CAC: "CACclassifierLast", CROSS_ENTROPY: "closedSetClassifierLast"}


def test_cifar_plus_10_files_serve_cifar_plus_50():
    assert saved_under("CIFAR+10") == ["CIFAR+10", "CIFAR+50"]
    assert saved_under("MNIST") == ["MNIST"] and saved_under("CIFAR+50") == ["CIFAR+50"]
    assert trained_on("CIFAR+50") == "CIFAR+10" and trained_on("CIFAR+10") == "CIFAR+10"
    assert trained_on("SVHN") == "SVHN"


def test_lock_is_hidden_beside_the_checkpoints():
    path = lock_path("Digits", 1, "demo", CAC)
    assert os.path.dirname(path) == os.path.dirname(weights_path("Digits", 1, "demo", CAC_ANCHOR_LOSS))
    assert os.path.basename(path) == ".Digits_1_demoCAC.lock"
