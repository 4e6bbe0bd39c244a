"""The random augmentation of whole batches as tensor operations, reproducing torchvision's
RandomResizedCrop, RandomHorizontalFlip and RandomRotation on PIL images: the same parameter
distributions (sample_boxes), and for given parameters the same geometry by one grid_sample
per batch (warp):

  crop + resize  bilinear within the crop box, edges clamped to the box (PIL's upscaling)
  flip           mirror of the resized image
  rotation       nearest neighbour about the image centre, fill 0 (PIL's Image.rotate)

Known difference: PIL rounds to 8 bits between its horizontal and vertical resize passes;
one sampling here rounds once, so augmented pixels can differ from PIL's by one grey level.
"""
import math

import torch
import torch.nn.functional as F

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
