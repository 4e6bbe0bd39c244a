"""The augmentation spec of one subset of a trial (SPEC section 4), made once from the config: both
pipelines are made from it, the per-sample torchvision Compose (`transform`) and datasets/resident.py.
Under --recipe modern or vaze (`randaugment` set) the training steps are Vaze et al.'s, in their order,
and stay per sample (the resident pipeline has no batched RandAugment)."""
from dataclasses import dataclass

from torchvision import transforms as T

from datasets.randaugment import VazeRandAugment

CROP_RATIO = (3.0 / 4.0, 4.0 / 3.0)  # RandomResizedCrop's default range of aspect ratios


@dataclass(frozen=True)
class AugmentSpec:
    """kind ("train", "eval" or "anchor"), the side of the square images out, the per-channel mean and std;
    for `train` also the crop's smallest area share, the mirror probability, rotations in -rotate..rotate."""

    kind: str
    im_size: int
    mean: list
    std: list
    scale_min: float = 1.0
    flip: float = 0.0
    rotate: float = 0.0
    randaugment: int | None = None  # RandAugment's magnitude M (N=1); None: the paper's augmentation
    pad: int = 0  # RandomCrop's padding, with randaugment
    geometry: bool = True  # RandAugment's rotation and translations

    @classmethod
    def from_config(cls, kind, cfg, mean, std):
        """The spec of `kind` for a data set's config entry."""
        if kind != "train":
            return cls(kind, cfg["im_size"], mean, std)
        aug = cfg["data_transforms"]
        return cls(kind, cfg["im_size"], mean, std, aug["scale_min"], aug["flip"], aug["rotate"])

    @property
    def random(self):
        """True when the spec draws random parameters per image."""
        return self.kind == "train"

    @property
    def degrees(self):
        """The rotation range as RandomRotation stores it."""
        return float(-self.rotate), float(self.rotate)

    def head(self):
        """The deterministic PIL steps before the random ones (the resident pipeline runs them once per image)."""
        if self.kind == "anchor":
            return [T.Resize(self.im_size), T.CenterCrop(self.im_size)]
        return [T.Resize(self.im_size)]

    def transform(self):
        """The torchvision Compose of the per-sample pipeline."""
        steps = self.head()
        if self.random and self.randaugment is not None:  # theirs: RandAugment on the image as read
            steps = [VazeRandAugment(1, self.randaugment, self.geometry), *steps,
                     T.RandomCrop(self.im_size, padding=self.pad), T.RandomHorizontalFlip(self.flip)]
        elif self.random:
            steps += [T.RandomResizedCrop(self.im_size, scale=(self.scale_min, 1.0)),
                      T.RandomHorizontalFlip(self.flip), T.RandomRotation(self.rotate)]
        return T.Compose([*steps, T.ToTensor(), T.Normalize(self.mean, self.std)])
