"""The CNN of paper appendix B.3, modelled on the CleverHans reference CNN.

3x3 convolutions with Leaky ReLU; a few equally spaced layers use stride 2 and double the number
of channels there; one final linear layer maps the features to 2 logits.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Leaky ReLU slope: TensorFlow's ``tf.nn.leaky_relu`` default, which the CleverHans models used.
NEGATIVE_SLOPE = 0.2
#: Downsampling stops once the feature maps would fall below this side length.
MIN_FEATURE_SIDE = 4


class CNN(nn.Module):
    """Binary image classifier: x [n, d] or [n, C, H, W] in [0, 1] -> logits [n, 2].

    Layer i (0-based) of ``depth`` is a 3x3 convolution (padding 1) followed by Leaky ReLU. The first
    layer has ``width`` filters. ``n_strided`` layers, the last one of each of ``n_strided`` equal
    blocks of layers, use stride 2 and double the channels (except layer 0, which always outputs
    ``width``). Default ``n_strided``: ``depth // 2`` (at least 1), capped so that the feature maps
    stay at least ``MIN_FEATURE_SIDE`` pixels wide (4 halvings for 64x64 CelebA, 2 for 28x28 MNIST).

    Args:
        image_shape: (C, H, W) of the flattened inputs, e.g. (3, 64, 64) or (1, 28, 28).
        width: filters of the first layer (>= 1).
        depth: number of convolution layers (>= 1).
        n_strided: number of stride-2 layers (0..depth); None for the default above.
        seed: seeds the weight initialisation (PyTorch defaults) without touching the global RNG.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        width: int = 32,
        depth: int = 6,
        *,
        n_strided: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if len(image_shape) != 3 or any(int(s) < 1 for s in image_shape):
            raise ValueError(f"image_shape must be (C, H, W) with positive sizes, got {tuple(image_shape)}")
        for name, value in (("width", width), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        channels, height, width_px = (int(s) for s in image_shape)
        # Each stride-2 layer halves the side; stop before it falls below MIN_FEATURE_SIDE.
        max_strided = max(0, math.floor(math.log2(min(height, width_px) / MIN_FEATURE_SIDE)))
        if n_strided is None:
            n_strided = min(max(1, depth // 2), max_strided)
        elif isinstance(n_strided, bool) or not isinstance(n_strided, int) or not 0 <= n_strided <= depth:
            raise ValueError(f"n_strided must be an integer in 0..depth={depth}, got {n_strided!r}")
        self.image_shape = (channels, height, width_px)
        self.width, self.depth, self.n_strided = width, depth, n_strided
        self.strided_layers = tuple((j + 1) * depth // n_strided - 1 for j in range(n_strided))

        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            layers: list[nn.Module] = []
            c_in, h, w = channels, height, width_px
            for i in range(depth):
                stride = 2 if i in self.strided_layers else 1
                c_out = width if i == 0 else (2 * c_in if stride == 2 else c_in)
                layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.LeakyReLU(NEGATIVE_SLOPE)]
                c_in = c_out
                # Output side of a 3x3 convolution with padding 1: ceil(side / stride).
                h, w = -(-h // stride), -(-w // stride)
            self.features = nn.Sequential(*layers)
            self.classifier = nn.Linear(c_in * h * w, 2)

    def forward(self, x: Tensor) -> Tensor:
        """Logits [n, 2] for x [n, C*H*W] (flattened in (C, H, W) order) or [n, C, H, W]."""
        c, h, w = self.image_shape
        flat_ok = x.dim() == 2 and x.shape[1] == c * h * w
        if not flat_ok and not (x.dim() == 4 and tuple(x.shape[1:]) == (c, h, w)):
            raise ValueError(
                f"CNN expects x of shape [n, {c * h * w}] or [n, {c}, {h}, {w}], got {list(x.shape)}: "
                "check the dataset's image_shape"
            )
        return self.classifier(self.features(x.reshape(-1, c, h, w)).flatten(1))
