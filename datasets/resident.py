"""Device-resident data pipeline: a data set decoded once into a uint8 tensor on the training device,
then whole batches cut, augmented and normalized with tensor operations, as the subset's AugmentSpec
says. The deterministic head (Resize, CenterCrop) runs once per image through the same PIL code, so
evaluation batches equal the per-sample path's bit for bit. The random part draws torchvision's
parameter distributions (sample_boxes) from the loader's own torch.Generator (restored by --continue)
and reproduces PIL's geometry by one grid_sample per batch (warp):

  crop + resize  bilinear within the crop box, edges clamped to the box (PIL's upscaling)
  flip           mirror of the resized image
  rotation       nearest neighbour about the image centre, fill 0 (PIL's Image.rotate)

Known difference: PIL rounds to 8 bits between its horizontal and vertical resize passes; one
sampling here rounds once, so augmented pixels can differ from PIL's by one grey level."""
import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F

from datasets.augment import CROP_RATIO

MEMORY_SHARE = 0.5  # decode only when the images take at most this share of free memory
CROP_ATTEMPTS = 10  # torchvision's RandomResizedCrop tries 10 boxes before its fallback


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
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return None


def num_batches(n, batch_size, world, drop_last=False):
    """Global batches of `n` images; under `world` ranks a last batch too small to give every rank
    an image is dropped (both pipelines); `drop_last`: any partial last batch (static shapes)."""
    if drop_last or (world > 1 and n % batch_size and n % batch_size < world):
        return n // batch_size
    return math.ceil(n / batch_size)


def resident_bytes(dataset):
    """Bytes of the decoded images of `dataset`, or None where this pipeline does not reproduce it: no
    `data` array (image folders, TinyImageNet), RandAugment, or a crop that would shrink the image (PIL's
    bilinear filter widens when shrinking; one grid_sample does not)."""
    spec, base = getattr(dataset, "spec", None), getattr(dataset, "base", None)
    if (spec is None or base is None or getattr(base, "data", None) is None or len(dataset) == 0
            or spec.randaugment is not None):
        return None
    first = _head_array(base, dataset.indices[0], spec.head())
    if spec.random and max(first.shape[:2]) > spec.im_size:
        return None
    return len(dataset) * first.size


class ResidentLoader:
    """Batches (images, labels) of images decoded on their device. Every rank draws the same permutation and
    parameters and keeps its slice of each global batch, so N processes see the images of the 1-process run.
    Speed options (off by default; each changes which random numbers a batch gets, not their distribution):
    `drop_last` drops a partial last batch (every batch one shape); `augment_batches` K draws and applies
    the augmentation of K batches at once (one sampling for K x batch images instead of ~30 small ops a batch)."""

    def __init__(self, images, labels, batch_size, spec, shuffle=False, seed=0, shard=(0, 1),
                 channels_last=False, drop_last=False, augment_batches=1):
        self.images, self.labels, self.device = images, labels.to(images.device), images.device
        self.batch_size, self.shuffle, self.spec, self.channels_last = batch_size, shuffle, spec, channels_last
        self.drop_last, self.augment_batches = drop_last, max(1, int(augment_batches))
        self.rank, self.world = shard
        self.mean = torch.tensor(spec.mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self):
        return num_batches(len(self.labels), self.batch_size, self.world, self.drop_last)

    def __iter__(self):
        n = len(self.labels)
        order = (torch.randperm(n, generator=self.generator, device=self.device) if self.shuffle
                 else torch.arange(n, device=self.device))
        chunk, end, augmented = self.batch_size * self.augment_batches, len(self) * self.batch_size, None
        mine = slice(self.rank, None, self.world)  # this rank's share of a global batch
        for start in range(0, end, self.batch_size):
            batch = order[start:start + self.batch_size]
            with self._threads():  # parameters drawn for the global batch, images made for this rank's share
                if self.spec.random and self.augment_batches > 1:  # K batches augmented at once, then cut
                    if start % chunk == 0:  # each rank makes the whole chunk: K > 1 is a one-GPU lever
                        augmented = self._augment(order[start:min(start + chunk, end)])
                    images = augmented[start % chunk:start % chunk + len(batch)][mine]
                else:
                    images = self._augment(batch, mine) if self.spec.random else self.images[batch[mine]].float()
                images = images.div_(255).sub_(self.mean).div_(self.std)  # ToTensor, Normalize
                if self.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
            yield images, self.labels[batch][mine]

    @contextlib.contextmanager
    def _threads(self):
        """On CPU, one thread: a batch's augmentation is ~30 small element-wise ops, each too
        small to gain from threads, and on a busy machine every parallel region waits for its
        slowest thread (measured, 2-core CPU under load: 8,000 vs 200 images/s)."""
        threads = torch.get_num_threads()
        torch.set_num_threads(1 if self.device.type == "cpu" else threads)
        try:
            yield
        finally:
            torch.set_num_threads(threads)

    def draw_params(self, n, height, width):
        """Output size and per-image (top, left, box_h, box_w, flip, angle) of one batch."""
        g, dev, spec = self.generator, self.device, self.spec
        top, left, box_h, box_w = sample_boxes(n, height, width, (spec.scale_min, 1.0), CROP_RATIO, g, dev)
        flip = torch.rand(n, generator=g, device=dev) < float(spec.flip)
        lo, hi = spec.degrees
        angle = lo + (hi - lo) * torch.rand(n, generator=g, device=dev, dtype=torch.float64)
        return spec.im_size, (top, left, box_h, box_w, flip, angle)

    def _augment(self, index, keep=slice(None)):
        """Images `index` augmented, parameters drawn for all of them; only those at positions `keep` made."""
        size, params = self.draw_params(len(index), self.images.shape[2], self.images.shape[3])
        rotate = self.spec.degrees != (0.0, 0.0)
        out = warp(self.images[index[keep]], size, *(p[keep] for p in params), rotate=rotate)
        return out.round_().clamp_(0, 255)  # back on PIL's 8-bit grid


def resident_loader(dataset, batch_size, shuffle, device, seed=0, shard=(0, 1), channels_last=False,
                    check_memory=True, drop_last=False, augment_batches=1):
    """A ResidentLoader, or None where this pipeline does not reproduce `dataset` or (`check_memory`; a training
    run decides for all its ranks beforehand: engine/placement.py) it would fill MEMORY_SHARE of free memory."""
    size, free = resident_bytes(dataset), free_memory(device) if check_memory else None
    if size is None or free is not None and size > MEMORY_SHARE * free:
        return None
    images = decode(dataset.base, dataset.indices, dataset.spec.head()).to(device)
    labels = torch.as_tensor(dataset.labels, dtype=torch.int64)
    return ResidentLoader(images, labels, batch_size, dataset.spec, shuffle, seed, shard, channels_last, drop_last,
                          augment_batches)
