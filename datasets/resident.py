"""Device-resident data pipeline: decode a data set once into a uint8 tensor on the training
device, then cut, augment and normalize whole batches with tensor operations.

It reads the torchvision transform of the data set it replaces (datasets/loaders.py) and
reproduces it: the deterministic head (Resize, CenterCrop) runs once per image through the
same PIL code at decode time, so evaluation batches equal the per-sample path's bit for bit;
the random part (RandomResizedCrop, RandomHorizontalFlip, RandomRotation) draws the same
parameter distributions as torchvision and is applied by one grid_sample per batch:

  crop + resize  bilinear within the crop box, edges clamped to the box (PIL's upscaling)
  flip           mirror of the resized image
  rotation       nearest neighbour about the image centre, fill 0 (PIL's Image.rotate)

Known difference: PIL rounds to 8 bits between its horizontal and vertical resize passes;
one sampling here rounds once, so augmented pixels can differ from PIL's by one grey level.
Draws come from the loader's own torch.Generator (seeded, state_dict()/load_state_dict()
for resuming); the global RNG is untouched.
"""
import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode

CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback
MEMORY_SHARE = 0.5  # decode only when the images take at most this share of free memory


def parse_transform(transform):
    """Split a torchvision Compose into (head, augment, mean, std), or None when it holds a step
    this pipeline does not reproduce (the caller then keeps the per-sample path)."""
    steps = list(transform.transforms) if isinstance(transform, T.Compose) else [transform]
    head, augment, mean, std = [], {}, None, None
    for step in steps:
        if isinstance(step, (T.Resize, T.CenterCrop)) and not augment:
            head.append(step)
        elif isinstance(step, T.RandomResizedCrop) and not augment and step.interpolation == InterpolationMode.BILINEAR:
            augment["crop"] = (tuple(step.size), tuple(step.scale), tuple(step.ratio))
        elif isinstance(step, T.RandomHorizontalFlip):
            augment["flip"] = float(step.p)
        elif (isinstance(step, T.RandomRotation) and step.interpolation == InterpolationMode.NEAREST
              and not step.expand and step.center is None and not step.fill):
            augment["degrees"] = tuple(float(d) for d in step.degrees)
        elif isinstance(step, T.ToTensor) and mean is None:
            mean = ()
        elif isinstance(step, T.Normalize) and mean == ():
            mean, std = tuple(step.mean), tuple(step.std)
        else:
            return None
    if not mean:
        return None
    return head, augment, mean, std


def _head_array(base, index, head):
    image = base[int(index)][0]
    for step in head:
        image = step(image)
    array = np.asarray(image, dtype=np.uint8)
    return array[:, :, None] if array.ndim == 2 else array


def decode(base, indices, head):
    """uint8 (N, C, H, W) of images `indices` of `base`, after the deterministic head transforms."""
    first = _head_array(base, indices[0], head)
    out = np.empty((len(indices), *first.shape), dtype=np.uint8)
    for n, i in enumerate(indices):
        out[n] = _head_array(base, i, head)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def free_memory(device):
    """Bytes free on `device` (CPU: MemAvailable of /proc/meminfo), None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def fits(dataset, head, augment, device):
    """In-memory source (torchvision's MNIST/CIFAR/SVHN, Digits: a `data` array) whose decoded
    images fit comfortably; folder data sets such as TinyImageNet stay per-sample. A crop must
    only enlarge (PIL's bilinear filter widens when shrinking; one grid_sample does not)."""
    base = getattr(dataset, "base", None)
    if base is None or getattr(base, "data", None) is None or len(dataset) == 0:
        return False
    first = _head_array(base, dataset.indices[0], head)
    if "crop" in augment and max(first.shape[:2]) > min(augment["crop"][0]):
        return False
    free = free_memory(device)
    return free is None or len(dataset) * first.size <= MEMORY_SHARE * free


def sample_boxes(n, height, width, scale, ratio, generator, device):
    """(top, left, box_h, box_w) of n crops, drawn as torchvision's RandomResizedCrop.get_params:
    up to 10 tries of area share ~ U(scale), log aspect ~ U(log ratio); else the centre fallback."""
    area = height * width
    u = torch.rand(n, CROP_ATTEMPTS, 2, generator=generator, device=device, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.to(torch.uint8).argmax(1, keepdim=True)  # first successful try
    w, h = w.gather(1, first).squeeze(1), h.gather(1, first).squeeze(1)
    # fallback (no try fitted): the whole image, its aspect clamped into the ratio range
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fw, fh = round(height * max(ratio)), height
    else:
        fw, fh = width, height
    found = ok.any(1)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    pos = torch.rand(n, 2, generator=generator, device=device, dtype=torch.float64)
    top = torch.where(found, torch.floor(pos[:, 0] * (height - h + 1)).clamp_max(height - h), (height - h) // 2)
    left = torch.where(found, torch.floor(pos[:, 1] * (width - w + 1)).clamp_max(width - w), (width - w) // 2)
    return top, left, h, w


def warp(images, size, top, left, box_h, box_w, flip, angle, rotate=True):
    """Crop box -> resize to size x size (bilinear) -> mirror where `flip` -> rotate by `angle`
    degrees counter-clockwise (nearest, fill 0), as one sampling; float images out, 0..255.
    rotate=False (no rotation configured) keeps the map separable: rows and columns apart."""
    n, _, height, width = images.shape
    f64 = {"device": images.device, "dtype": torch.float64}
    centre = size / 2
    if rotate:  # output pixel centre -> position in the flipped, resized image (PIL's affine map)
        ys, xs = torch.meshgrid(torch.arange(size, **f64) + 0.5 - centre, torch.arange(size, **f64) + 0.5 - centre,
                                indexing="ij")
        theta = -torch.deg2rad(angle.to(torch.float64)).view(n, 1, 1)
        cos, sin = torch.cos(theta), torch.sin(theta)
        x_in = cos * xs + sin * ys + centre
        y_in = -sin * xs + cos * ys + centre
        inside = (x_in >= 0) & (x_in < size) & (y_in >= 0) & (y_in < size)
        px, py = torch.floor(x_in), torch.floor(y_in)
    else:
        px, py = torch.arange(size, **f64).view(1, 1, size), torch.arange(size, **f64).view(1, size, 1)
    px = torch.where(flip.view(n, 1, 1), size - 1 - px, px)
    # resize: pixel centre of the resized image -> source coordinate, clamped to the crop box
    sx = left.view(n, 1, 1) + (px + 0.5) * (box_w.view(n, 1, 1) / size) - 0.5
    sy = top.view(n, 1, 1) + (py + 0.5) * (box_h.view(n, 1, 1) / size) - 0.5
    sx = torch.minimum(torch.maximum(sx, left.view(n, 1, 1)), (left + box_w - 1).view(n, 1, 1))
    sy = torch.minimum(torch.maximum(sy, top.view(n, 1, 1)), (top + box_h - 1).view(n, 1, 1))
    gx, gy = ((2 * sx + 1) / width - 1).float(), ((2 * sy + 1) / height - 1).float()
    grid = torch.stack(torch.broadcast_tensors(gx, gy), dim=3)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out * inside.unsqueeze(1) if rotate else out


class ResidentLoader:
    """Batches (images, labels) of a data set decoded once on `device`; iterate once per epoch.

    shuffle: a new permutation per epoch from the loader's generator. shard=(rank, world):
    every rank draws the same permutation and parameters and keeps its slice [rank::world]
    of each global batch, so N processes see exactly the images of the 1-process run.
    """

    def __init__(self, images, labels, batch_size, mean, std, augment=None, shuffle=False, seed=0,
                 shard=(0, 1), channels_last=False):
        self.images, self.labels = images, labels.to(images.device)
        self.batch_size, self.shuffle, self.augment = batch_size, shuffle, augment or {}
        self.rank, self.world = shard
        self.channels_last = channels_last
        self.device = images.device
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self):
        n = len(self.labels)
        if self.world > 1 and n % self.batch_size and n % self.batch_size < self.world:
            return n // self.batch_size  # a last batch too small to give every rank an image is dropped
        return math.ceil(n / self.batch_size)

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])

    def __iter__(self):
        n = len(self.labels)
        order = (torch.randperm(n, generator=self.generator, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            batch = order[start:start + self.batch_size]
            with self._threads():
                images = self._augment(self.images[batch]) if self.augment else self.images[batch].float()
                mine = slice(self.rank, None, self.world)
                images = images[mine].div_(255).sub_(self.mean).div_(self.std)  # ToTensor, Normalize
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.labels[batch][mine]

    @contextlib.contextmanager
    def _threads(self):
        """On CPU, one thread: a batch's augmentation is ~30 small element-wise ops, each too
        small to gain from threads, and on a busy machine every parallel region waits for its
        slowest thread (measured, 2-core CPU under load: 8,000 vs 200 images/s)."""
        if self.device.type != "cpu" or torch.get_num_threads() == 1:
            yield
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def draw_params(self, n, height, width):
        """Output size and per-image (top, left, box_h, box_w, flip, angle) of one batch."""
        g, dev = self.generator, self.device
        if "crop" in self.augment:
            (size, _), scale, ratio = self.augment["crop"]
            top, left, box_h, box_w = sample_boxes(n, height, width, scale, ratio, g, dev)
        else:
            size = height
            top = left = torch.zeros(n, dtype=torch.float64, device=dev)
            box_h, box_w = torch.full_like(top, height), torch.full_like(top, width)
        flip = torch.rand(n, generator=g, device=dev) < self.augment.get("flip", 0.0)
        lo, hi = self.augment.get("degrees", (0.0, 0.0))
        angle = lo + (hi - lo) * torch.rand(n, generator=g, device=dev, dtype=torch.float64)
        return size, (top, left, box_h, box_w, flip, angle)

    def _augment(self, images):
        size, params = self.draw_params(len(images), images.shape[2], images.shape[3])
        rotate = self.augment.get("degrees", (0.0, 0.0)) != (0.0, 0.0)
        return warp(images, size, *params, rotate=rotate).round_().clamp_(0, 255)  # back on PIL's 8-bit grid


def resident_loader(dataset, batch_size, shuffle, device, seed=0, shard=(0, 1), channels_last=False):
    """A ResidentLoader for a RemappedSubset (datasets/loaders.py), or None where the data set or
    its transform is not one this pipeline reproduces."""
    parsed = parse_transform(dataset.transform) if hasattr(dataset, "transform") else None
    if parsed is None or not fits(dataset, parsed[0], parsed[1], device):
        return None
    head, augment, mean, std = parsed
    images = decode(dataset.base, dataset.indices, head).to(device)
    labels = torch.as_tensor(dataset.labels, dtype=torch.int64)
    return ResidentLoader(images, labels, batch_size, mean, std, augment, shuffle, seed, shard, channels_last)
