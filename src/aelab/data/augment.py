"""Training images moved by a few pixels: more distinct images from a small set, for ``--shift``.

Each image of a minibatch moves by its own offset, drawn uniformly from -N..N pixels in each
direction (one draw in (2N+1)^2 leaves it where it is). The pixels that move in at an edge repeat
the edge row or column, so a plain background stays plain and nothing wraps round. Input and target
move together: the model learns to reconstruct the moved image, which is one more image of the
same kind. The randomness comes from the generator passed in, so a run is reproducible and resumable.
"""
from __future__ import annotations

import torch

from ..errors import OptionError

MAX_SHIFT = 8  # pixels; more moves the content of small images out of the frame


def check_shift(pixels: object) -> int:
    """``pixels`` as a shift (an int from 0 to ``MAX_SHIFT``); anything else is refused."""
    if isinstance(pixels, bool) or not isinstance(pixels, int) or not 0 <= pixels <= MAX_SHIFT:
        raise OptionError(f"the shift must be a whole number of pixels from 0 to {MAX_SHIFT}, got {pixels!r}",
                          hint="use e.g. --shift 1, or --shift 0 for none")
    return pixels


def check_shift_fits(pixels: int, is_image: bool) -> None:
    """Refuse a shift for data that is not images: a table's columns have no neighbours to move to."""
    if pixels and not is_image:
        raise OptionError("--shift moves images by whole pixels, and this data is a table",
                          hint="leave --shift out, or give 0")


def shift_images(rows: torch.Tensor, image_size: tuple[int, int], pixels: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``rows`` (n, c*h*w, channels first, as the model's rows) with each image moved by its own offset
    of -``pixels``..``pixels`` in each direction, edges repeated; a new tensor (``rows`` when ``pixels`` is 0)."""
    if pixels == 0:
        return rows
    n = rows.shape[0]
    h, w = image_size
    images = rows.reshape(n, -1, h, w)
    drawn_on = generator.device if generator is not None else rows.device
    dy, dx = torch.randint(-pixels, pixels + 1, (2, n), generator=generator, device=drawn_on).to(rows.device)
    # output pixel (y, x) of image i reads input pixel (y - dy[i], x - dx[i]), clamped to the image
    ys = (torch.arange(h, device=rows.device) - dy[:, None]).clamp_(0, h - 1)  # (n, h)
    xs = (torch.arange(w, device=rows.device) - dx[:, None]).clamp_(0, w - 1)  # (n, w)
    moved = images.gather(2, ys[:, None, :, None].expand(n, images.shape[1], h, w))
    moved = moved.gather(3, xs[:, None, None, :].expand(n, images.shape[1], h, w))
    return moved.reshape(n, -1)
