"""Every worked example ("Case: ...") of shared/CONCEPTS.md, reproduced exactly.

One test per case identifier; each docstring cites the seed file and lines. Seed files:
000 = 000_9e3113838fd4bfa5.txt, 001 = 001_a40faeabb4185747.txt,
002 = 002_f8196a0eb32b5169.txt, 003 = 003_1ad254f6b269b9b0.txt,
004 = 004_f8ae84c783f63e2b.txt (all under shared/seeds/). Corrected values follow
CONCEPTS section P. Integer inputs are compared exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import glassnet
from glassnet import functional as F
from glassnet import nn
from glassnet.kernels import get_kernel

# Every test here runs on both backends: the fast kernels and the readable reference.
pytestmark = pytest.mark.usefixtures("backend")

# ------------------------------------------------------------------ seed data

# 000 L185-189: the 5x5 binary image (first number of each "a x b" cell).
IMG_000_5x5 = np.array(
    [
        [1, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1],
        [0, 0, 1, 1, 0],
        [0, 1, 1, 0, 0],
    ]
)
# 000 L284-287: the 4x4 "Padding" example.
IMG_000_PAD_4x4 = np.array([[0, 50, 0, 29], [0, 80, 31, 2], [33, 90, 0, 75], [0, 9, 0, 95]])
# 000 L302-305 / L309-312: ReLU input and output.
RELU_IN = np.array([[1, 14, -9, 4], [-2, -20, 10, 6], [-3, 3, 11, 1], [2, 54, -2, 80]])
RELU_OUT = np.array([[1, 14, 0, 4], [0, 0, 10, 6], [0, 3, 11, 1], [2, 54, 0, 80]])
# 000 L336-339 (= L351-354): pooling input.
POOL_IN = np.array([[2, 3, 1, 9], [4, 7, 3, 5], [8, 2, 2, 2], [1, 3, 4, 5]])
# 000 L377-380: backprop max-pool input.
BP_POOL_IN = np.array([[0, 55, 0, 0], [20, 0, 41, 33], [0, 90, 0, 0], [0, 57, 0, 95]])
# 000 L391-393 / L395-397: backprop conv image and filter.
BP_CONV_IMG = np.array([[0, 7, 0], [0, 80, 31], [33, 14, 0]])
BP_CONV_FILTER = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]])
# 001 L25: the 4x4 image 1..16 and the 2x2 kernel.
IMG_001_4x4 = np.arange(1, 17).reshape(4, 4)
K_001_2x2 = np.array([[-1, 1], [0, 1]])
# 002 L91-97 (repeated L128-134, L163-169, L331-337): the 7x7 binary input image.
IMG_002_7x7 = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0],
        [0, 1, 0, 0, 0, 1, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ]
)
# 002 L105-107: the feature detector.
K_002 = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 1]])
# 002 L179-183 as printed; cell (2, 2) is wrong (CONCEPTS P2).
FMAP_002_PRINTED = np.array([[0, 1, 0, 0, 0], [0, 1, 1, 1, 0], [1, 0, 1, 2, 1], [1, 4, 2, 1, 0], [0, 0, 1, 2, 1]])
FMAP_002 = FMAP_002_PRINTED.copy()
FMAP_002[2, 2] = 0
# 002 L295-297: the pooled feature map.
POOLED_002 = np.array([[1, 1, 0], [4, 2, 1], [0, 2, 1]])
# 003 L48-52: the 5x5 input (big digits) and the 3x3 kernel (subscripts).
IMG_003_5x5 = np.array([[3, 3, 2, 1, 0], [0, 0, 1, 3, 1], [3, 1, 2, 2, 3], [2, 0, 0, 2, 2], [2, 0, 0, 0, 1]])
K_003 = np.array([[0, 1, 2], [2, 2, 0], [0, 1, 2]])
OUT_003 = np.array([[12, 12, 17], [10, 17, 19], [9, 6, 14]])
# 004 L91-95 and L101-103: the x10 image and the kernel.
IMG_004_X10 = np.array(
    [
        [10, 10, 10, 0, 0],
        [0, 10, 10, 10, 0],
        [0, 0, 10, 10, 10],
        [0, 0, 10, 10, 0],
        [0, 10, 10, 0, 0],
    ]
)
K_X = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]])


# ------------------------------------------------------------------ helpers


def nchw(a: Any, dtype: Any = None) -> np.ndarray:
    """(H, W) -> (1, 1, H, W)."""
    return np.asarray(a, dtype=dtype)[None, None]


def oihw(k: Any, dtype: Any = None) -> np.ndarray:
    """(kH, kW) -> (1, 1, kH, kW)."""
    return np.asarray(k, dtype=dtype)[None, None]


def conv(x: Any, k: Any, **kw: Any) -> np.ndarray:
    """Single-channel conv2d on 2-D arrays, returning (H_out, W_out)."""
    return F.conv2d(nchw(x), oihw(k), **kw)[0, 0]


def naive_xcorr(x: Any, k: Any, stride: int = 1, pad: int = 0) -> np.ndarray:
    """Independent loop oracle: out(i,j) = sum_{a<kh, b<kw} xpad(i*s+a, j*s+b) * k(a, b)."""
    xp = np.pad(np.asarray(x, dtype=np.float64), pad)
    k = np.asarray(k, dtype=np.float64)
    kh, kw = k.shape
    ho, wo = (xp.shape[0] - kh) // stride + 1, (xp.shape[1] - kw) // stride + 1
    out = np.zeros((ho, wo))
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    out[i, j] += xp[i * stride + a, j * stride + b] * k[a, b]
    return out


def n_params(module: Any) -> int:
    """Weight + bias element count of a layer (0 for parameter-free layers)."""
    total = 0
    for attr in ("weight", "bias"):
        p = getattr(module, attr, None)
        if p is not None:
            total += int(np.asarray(p.data).size)
    return total


def first_grad(result: Any) -> np.ndarray:
    """``op_backward`` returns one gradient per array input; take the input's."""
    return result[0]


# =================================================================== seed 000


def test_s000_conv_5x5_k101() -> None:
    """000 L185-191: 5x5 binary image * [[1,0,1],[0,1,0],[1,0,1]]; only "4" printed.

    Full output [[4,3,4],[2,4,3],[2,3,4]] (CONCEPTS P7). The kernel is 180°-symmetric,
    so true convolution gives the same result.
    """
    expected = np.array([[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    out = conv(IMG_000_5x5, K_X)
    assert out[0, 0] == 4
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(conv(IMG_000_5x5, K_X, flip=True), expected)
    np.testing.assert_array_equal(expected, naive_xcorr(IMG_000_5x5, K_X))


def test_s000_outsize_4x4_valid() -> None:
    """000 L282-292: valid padding, 4x4 with 3x3 -> 2x2 ("29 ? / ? ?")."""
    assert glassnet.output_size(4, 3) == 2
    assert glassnet.output_size(4, 3, stride=1, padding=0) == 2
    k = get_kernel("right_sobel")
    assert conv(IMG_000_PAD_4x4, k, padding="valid").shape == (2, 2)
    assert conv(IMG_000_PAD_4x4, k).shape == (2, 2)  # valid is the default
    assert conv(IMG_000_PAD_4x4, k, padding="same").shape == (4, 4)  # 000 L276


def test_s000_valid_4x4_sobel_29() -> None:
    """000 L282-290: 4x4 "Padding" example, printed "29 ? / ? ?" (CONCEPTS P6, F17).

    Kernel from the source blog (V. Zhou's "vertical Sobel") [[-1,0,1],[-2,0,2],[-1,0,1]];
    cross-correlation gives [[29,-192],[-35,-22]]. True convolution with the 001 Left
    Sobel [[1,0,-1],[2,0,-2],[1,0,-1]] gives the same, and flip=True with the blog's
    kernel gives the negation.
    """
    expected = np.array([[29, -192], [-35, -22]])
    zhou = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(get_kernel("right_sobel"), zhou)
    out = conv(IMG_000_PAD_4x4, zhou, padding="valid")
    assert out[0, 0] == 29
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(conv(IMG_000_PAD_4x4, get_kernel("left_sobel"), padding="valid", flip=True), expected)
    np.testing.assert_array_equal(conv(IMG_000_PAD_4x4, zhou, flip=True), -expected)


def test_s000_relu_4x4() -> None:
    """000 L302-312: ReLU max(0, x); not abs() (002 L236 is wrong, CONCEPTS P13/G2)."""
    out = F.relu(nchw(RELU_IN))[0, 0]
    np.testing.assert_array_equal(out, RELU_OUT)
    assert int(np.sum(np.abs(RELU_IN) != RELU_OUT)) == 5  # abs() would fail 5 cells


def test_s000_maxpool_4x4() -> None:
    """000 L334-347: 2x2 max pool, stride 2 -> [[7,9],[8,5]]."""
    out = F.max_pool2d(nchw(POOL_IN), 2, stride=2)[0, 0]
    np.testing.assert_array_equal(out, [[7, 9], [8, 5]])
    np.testing.assert_array_equal(F.max_pool2d(nchw(POOL_IN), 2)[0, 0], out)  # stride=kernel


def test_s000_avgpool_4x4() -> None:
    """000 L349-362: 2x2 average pool, stride 2 -> [[4,4.5],[3.5,3.25]].

    The seed prints 3.25 at the bottom left; (8+2+1+3)/4 = 3.5 (CONCEPTS P1).
    """
    out = F.avg_pool2d(nchw(POOL_IN), 2, stride=2)[0, 0]
    np.testing.assert_array_equal(out, [[4, 4.5], [3.5, 3.25]])
    assert out[1, 0] == 3.5 and out[1, 0] != 3.25


def test_s000_backprop_maxpool_4x4() -> None:
    """000 L373-385: max pool forward [[55,41],[90,95]]; backward routes each gradient
    to the cell that held the maximum, 0 elsewhere (CONCEPTS H12)."""
    out, ctx = F.max_pool2d_forward(nchw(BP_POOL_IN), 2, stride=2)
    np.testing.assert_array_equal(out[0, 0], [[55, 41], [90, 95]])
    grad = nchw([[1.0, 2.0], [3.0, 4.0]], dtype=out.dtype)
    dx = first_grad(F.max_pool2d_backward(grad, ctx))
    expected = np.zeros((4, 4))
    expected[0, 1], expected[1, 2], expected[2, 1], expected[3, 3] = 1, 2, 3, 4
    assert dx.shape == (1, 1, 4, 4)
    np.testing.assert_array_equal(dx[0, 0], expected)
    # the non-zero gradient positions are exactly the arg-max cells of the forward input
    np.testing.assert_array_equal(dx[0, 0] != 0, np.isin(BP_POOL_IN, [55, 41, 90, 95]))


def test_s000_backprop_conv_center_80() -> None:
    """000 L389-403: 3x3 image * identity filter = 80, and d out / d filter(x, y) =
    image(i+x, j+y): the weight gradient is the image itself, 80 at the centre."""
    x = nchw(BP_CONV_IMG, dtype=np.float64)
    w = oihw(BP_CONV_FILTER, dtype=np.float64)
    out, ctx = F.conv2d_forward(x, w)
    assert out.shape == (1, 1, 1, 1)
    assert out[0, 0, 0, 0] == 80
    dx, dw, db = F.conv2d_backward(np.ones_like(out), ctx)
    np.testing.assert_array_equal(dw[0, 0], BP_CONV_IMG)
    assert dw[0, 0, 1, 1] == 80
    np.testing.assert_array_equal(dx[0, 0], BP_CONV_FILTER)
    assert db is None


def test_s000_conv_filter_gradient_formula() -> None:
    """000 L403-407: out(i,j) = sum_{x,y=0..F-1} image(i+x, j+y) filter(x,y) (the seed's
    0..3 should be 0..2 for a 3x3 filter, CONCEPTS P5/J1), and
    dL/dfilter(x,y) = sum_ij dL/dout(i,j) image(i+x, j+y), i.e. dW = xcorr(input, dL/dout)."""
    rng = np.random.default_rng(5)
    img = rng.integers(-5, 6, size=(6, 7)).astype(np.float64)
    filt = rng.integers(-3, 4, size=(3, 3)).astype(np.float64)
    out, ctx = F.conv2d_forward(nchw(img), oihw(filt), np.zeros(1))
    assert out.shape == (1, 1, 4, 5)
    # forward: the formula with x, y in 0..2
    formula = np.array(
        [[sum(img[i + x, j + y] * filt[x, y] for x in range(3) for y in range(3)) for j in range(5)] for i in range(4)]
    )
    np.testing.assert_array_equal(out[0, 0], formula)
    # backward: dW = xcorr(input, dL/dout) (valid), exact on integers
    g = rng.integers(-4, 5, size=(4, 5)).astype(np.float64)
    dx, dw, db = F.conv2d_backward(nchw(g), ctx)
    assert dw.shape == (1, 1, 3, 3)  # x, y range over 0..2 only
    expected_dw = np.array(
        [[sum(g[i, j] * img[i + x, j + y] for i in range(4) for j in range(5)) for y in range(3)] for x in range(3)]
    )
    np.testing.assert_array_equal(dw[0, 0], expected_dw)
    np.testing.assert_array_equal(dw[0, 0], naive_xcorr(img, g))
    np.testing.assert_array_equal(db, [g.sum()])
    # dx = full convolution of dL/dout with the filter (xcorr with the flipped filter)
    np.testing.assert_array_equal(dx[0, 0], naive_xcorr(np.pad(g, 2), filt[::-1, ::-1]))
    # finite differences on L = sum(g * out)
    eps = 1e-6
    for x_, y_ in [(0, 0), (1, 2), (2, 1)]:
        fp, fm = filt.copy(), filt.copy()
        fp[x_, y_] += eps
        fm[x_, y_] -= eps
        num = (np.sum(g * conv(img, fp)) - np.sum(g * conv(img, fm))) / (2 * eps)
        assert num == pytest.approx(dw[0, 0, x_, y_], rel=1e-7, abs=1e-6)


# =================================================================== seed 001


def test_s001_conv_4x4_2x2() -> None:
    """001 L23-26: [[1..16]] * [[-1,1],[0,1]] = [[7,8,9],[11,12,13],[15,16,17]] is
    cross-correlation; the slide's own flipped formula (L17) gives
    [[0,1,2],[4,5,6],[8,9,10]] (CONCEPTS P3)."""
    np.testing.assert_array_equal(conv(IMG_001_4x4, K_001_2x2), [[7, 8, 9], [11, 12, 13], [15, 16, 17]])
    np.testing.assert_array_equal(conv(IMG_001_4x4, K_001_2x2, flip=True), [[0, 1, 2], [4, 5, 6], [8, 9, 10]])
    # the slide's formula S(i,j) = sum_m sum_n I(i-m, j-n) K(m,n), on valid positions
    img, k = IMG_001_4x4, K_001_2x2
    true_conv = np.array(
        [
            [sum(img[i + 1 - m, j + 1 - n] * k[m, n] for m in range(2) for n in range(2)) for j in range(3)]
            for i in range(3)
        ]
    )
    np.testing.assert_array_equal(true_conv, [[0, 1, 2], [4, 5, 6], [8, 9, 10]])


def test_s001_sparse_vs_dense_1d() -> None:
    """001 L73-106: 1-D case, 5 inputs -> 5 hidden nodes: 25 unique weights fully
    connected vs 3 with sparse connectivity + weight sharing (biases excluded);
    h3 receives inputs from only three input nodes (L84)."""
    dense = nn.Linear(5, 5)
    assert np.asarray(dense.weight.data).size == 25
    layer = nn.Conv2d(1, 1, (1, 3), padding=(0, 1))
    assert np.asarray(layer.weight.data).size == 3
    assert n_params(layer) == 3 + 1
    # locality: the gradient of h3 (index 2) reaches inputs 1, 2, 3 only
    x = np.arange(1.0, 6.0).reshape(1, 1, 1, 5)
    w = np.array([[[[1.0, 2.0, 3.0]]]])
    out, ctx = F.conv2d_forward(x, w, padding=(0, 1))
    assert out.shape == (1, 1, 1, 5)
    g = np.zeros_like(out)
    g[0, 0, 0, 2] = 1.0
    dx = F.conv2d_backward(g, ctx)[0]
    np.testing.assert_array_equal(dx[0, 0, 0] != 0, [False, True, True, True, False])


def test_s001_outsize_7x7_k3_s1() -> None:
    """001 L135-137: 7x7 image, 3x3 kernel, stride 1 -> 5x5."""
    assert glassnet.output_size(7, 3, stride=1) == 5
    assert conv(np.ones((7, 7)), np.ones((3, 3)), stride=1).shape == (5, 5)


def test_s001_outsize_7x7_k3_s2() -> None:
    """001 L142-144: 7x7 image, 3x3 kernel, stride 2 -> 3x3."""
    assert glassnet.output_size(7, 3, stride=2) == 3
    assert conv(np.ones((7, 7)), np.ones((3, 3)), stride=2).shape == (3, 3)


def test_s001_outsize_7x7_k3_s1_zeropad() -> None:
    """001 L150-154: 7x7, 3x3, stride 1, zero padding (P = 1) -> 7x7 (CONCEPTS D7, D9)."""
    assert glassnet.output_size(7, 3, stride=1, padding=1) == 7
    assert conv(np.ones((7, 7)), np.ones((3, 3)), padding=1).shape == (7, 7)
    assert conv(np.ones((7, 7)), np.ones((3, 3)), padding="same").shape == (7, 7)
    # the zero padding really is zeros: the corner sums only 4 ones
    assert conv(np.ones((7, 7)), np.ones((3, 3)), padding=1)[0, 0] == 4


def test_s001_outsize_alexnet_conv1() -> None:
    """001 L241-258: (227 - 11)/4 + 1 = 55 -> 55x55x96."""
    assert glassnet.output_size(227, 11, stride=4) == 55
    x = np.zeros((1, 3, 227, 227), dtype=np.float32)
    w = np.zeros((96, 3, 11, 11), dtype=np.float32)
    assert F.conv2d(x, w, stride=4).shape == (1, 96, 55, 55)


def test_s001_s000_s004_filter_param_counts() -> None:
    """001 L182: a 3x3 filter on RGB has 27 weights + 1 bias; 001 L185: 5 filters ->
    5-channel output (140 params); 000 L211-217: four 3x3 filters on B/W (40) vs RGB
    (112) (CONCEPTS E4, E5, E8); 004 L499-500 / L547-548: weights [2,1,3,3], [1,3,3,3]."""
    one = nn.Conv2d(3, 1, 3)
    assert np.asarray(one.weight.data).size == 27
    assert np.asarray(one.bias.data).size == 1
    assert n_params(one) == 28
    five = nn.Conv2d(3, 5, 3)
    assert n_params(five) == 5 * (27 + 1) == 140
    assert five.forward(np.zeros((1, 3, 8, 8), dtype=np.float32)).shape == (1, 5, 6, 6)
    assert n_params(nn.Conv2d(1, 4, 3)) == 4 * (9 + 1) == 40
    assert n_params(nn.Conv2d(3, 4, 3)) == 4 * (27 + 1) == 112
    assert nn.Conv2d(1, 2, 3).weight.data.shape == (2, 1, 3, 3)
    assert nn.Conv2d(3, 1, 3).weight.data.shape == (1, 3, 3, 3)
    # weight sharing: the count does not depend on H, W (CONCEPTS A7)
    w = np.ones((5, 3, 3, 3))
    for size in (8, 32, 100):
        assert F.conv2d(np.ones((1, 3, size, size)), w).shape == (1, 5, size - 2, size - 2)


def _alexnet_layers(fc_bias: bool) -> list[Any]:
    """The 001 L277-306 table as glassnet.nn layers ('Norm' rows omitted: 0 params;
    dropout omitted: 0 params, identity at inference)."""
    return [
        nn.Conv2d(3, 96, 11, stride=4),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(96, 256, 5, stride=1, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Conv2d(256, 384, 3, stride=1, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 384, 3, stride=1, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, 3, stride=1, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(3, stride=2),
        nn.Flatten(),
        nn.Linear(256 * 6 * 6, 4096, bias=fc_bias),
        nn.ReLU(),
        nn.Linear(4096, 4096, bias=fc_bias),
        nn.ReLU(),
        nn.Linear(4096, 1000, bias=fc_bias),
    ]


def _row_shape(row: Any) -> tuple[int, ...]:
    """A summary row's output shape without the batch axis."""
    shape = tuple(int(s) for s in row.output_shape)
    return shape[1:] if len(shape) in (2, 4) else shape


def _row_params(row: Any) -> int:
    return int(row.params)


def test_s001_alexnet_table() -> None:
    """001 L277-306: every per-layer count and shape of the AlexNet table; total
    62,369,152 under the lecture's convention (conv with bias, FC without), 62,378,344
    with FC biases (CONCEPTS P8); conv part 3,747,200 ("3.7 million"), FC 58,621,952
    (P11); "62.3 million" truncates 62.37 M (P9); FC8 outputs logits (P10)."""
    layers = _alexnet_layers(fc_bias=False)
    conv_counts = [34_944, 614_656, 885_120, 1_327_488, 884_992]
    fc_counts = [37_748_736, 16_777_216, 4_096_000]
    counted = [n_params(m) for m in layers if n_params(m)]
    assert counted == conv_counts + fc_counts
    assert sum(conv_counts) == 3_747_200
    assert sum(fc_counts) == 58_621_952
    assert sum(counted) == 62_369_152
    assert int(62_369_152 / 1e5) / 10 == 62.3 and round(62_369_152 / 1e6, 1) == 62.4

    model = nn.Sequential(*layers)
    s = glassnet.summary(model, (1, 3, 227, 227))
    assert s.total_params == 62_369_152
    shapes = [_row_shape(r) for r in s.rows]
    params = [_row_params(r) for r in s.rows]
    expected_shapes = [
        (96, 55, 55),
        (96, 55, 55),
        (96, 27, 27),
        (256, 27, 27),
        (256, 27, 27),
        (256, 13, 13),
        (384, 13, 13),
        (384, 13, 13),
        (384, 13, 13),
        (384, 13, 13),
        (256, 13, 13),
        (256, 13, 13),
        (256, 6, 6),
        (9216,),
        (4096,),
        (4096,),
        (4096,),
        (4096,),
        (1000,),
    ]
    assert shapes[-len(expected_shapes) :] == expected_shapes
    assert [p for p in params if p] == conv_counts + fc_counts
    # FC8 is the last layer: logits, no ReLU after it
    assert isinstance(layers[-1], nn.Linear)

    with_bias = _alexnet_layers(fc_bias=True)
    assert sum(n_params(m) for m in with_bias) == 62_378_344 == 62_369_152 + 4096 + 4096 + 1000


def test_s001_alexnet_lecun_figure() -> None:
    """001 L308-320: the second AlexNet figure's labels are approximate two-GPU
    (groups=2) counts, not the table's (CONCEPTS K7, P12): 307K = conv2 grouped
    307,456; 442K = conv5 grouped 442,624; 1.3M = conv4 ungrouped 1,327,488 (grouped
    would be 663,936); 884K matches neither conv3 count (885,120) but truncates conv5's
    884,992; 35K rounds 34,944; 37M/16M/4M truncate the FC counts."""
    conv2_g = nn.Conv2d(96, 256, 5, padding=2, groups=2)
    conv4_g = nn.Conv2d(384, 384, 3, padding=1, groups=2)
    conv5_g = nn.Conv2d(384, 256, 3, padding=1, groups=2)
    assert n_params(conv2_g) == 307_456 and conv2_g.weight.data.shape == (256, 48, 5, 5)
    assert n_params(conv4_g) == 663_936
    assert n_params(conv5_g) == 442_624
    assert n_params(nn.Conv2d(384, 384, 3, padding=1)) == 1_327_488

    def k_trunc(n: int) -> int:
        return n // 1000

    assert k_trunc(307_456) == 307 and k_trunc(442_624) == 442
    assert round(1_327_488 / 1e6, 1) == 1.3
    assert round(34_944 / 1e3) == 35 and k_trunc(34_944) == 34  # 35K is rounded
    assert k_trunc(884_992) == 884  # conv5 ungrouped, truncated
    assert k_trunc(885_120) == 885 and round(885_120 / 1e3) == 885  # conv3: not 884K
    assert [37_748_736 // 10**6, 16_777_216 // 10**6, 4_096_000 // 10**6] == [37, 16, 4]
    assert round(37_748_736 / 1e6) == 38  # 37M is truncated, not rounded
    # grouped output is still [256, 27, 27]
    x = np.zeros((1, 96, 27, 27), dtype=np.float32)
    w = np.zeros((256, 48, 5, 5), dtype=np.float32)
    assert F.conv2d(x, w, padding=2, groups=2).shape == (1, 256, 27, 27)


# =================================================================== seed 002


def test_s002_feature_map_7x7() -> None:
    """002 L91-107, L179-183: 7x7 binary image * [[0,0,1],[1,0,0],[0,1,1]] -> 5x5
    feature map; cell (2,2) is printed 1 but is 0 (CONCEPTS P2); the other 24 cells
    match cross-correlation. True convolution (flip=True, the L45 definition) mismatches
    17 of the 25 printed cells (16 of the corrected ones) (CONCEPTS P4)."""
    out = conv(IMG_002_7x7, K_002)
    np.testing.assert_array_equal(out, FMAP_002)
    assert out[2, 2] == 0
    assert int(np.sum(out != FMAP_002_PRINTED)) == 1
    flipped = conv(IMG_002_7x7, K_002, flip=True)
    assert int(np.sum(flipped != FMAP_002_PRINTED)) == 17
    assert int(np.sum(flipped != FMAP_002)) == 16
    np.testing.assert_array_equal(flipped, conv(IMG_002_7x7, K_002[::-1, ::-1]))


def test_s002_feature_map_partial_2() -> None:
    """002 L118: the animation frame shows the first 2 values "0 1" (row-major) of the
    feature map; its caption "After 10 strides" (L124) is misplaced (CONCEPTS P16)."""
    out = conv(IMG_002_7x7, K_002)
    np.testing.assert_array_equal(out.ravel()[:2], [0, 1])


def test_s002_feature_map_partial_9() -> None:
    """002 L144-145: the frame after 8 strides shows 9 values "0 1 0 0 0 / 0 1 1 1"."""
    out = conv(IMG_002_7x7, K_002)
    np.testing.assert_array_equal(out.ravel()[:9], [0, 1, 0, 0, 0, 0, 1, 1, 1])


def test_s002_outsize_7x7_feature_map() -> None:
    """002 L163-183: 7x7 input, 3x3 detector, stride 1 -> 5x5 feature map."""
    assert glassnet.output_size(7, 3) == 5
    assert conv(IMG_002_7x7, K_002).shape == (5, 5)


def test_s002_maxpool_5x5_ceil() -> None:
    """002 L252-322: 2x2 max pool, stride 2, "if at the end of the row, we just
    continue" (ceil mode) -> 3x3 [[1,1,0],[4,2,1],[0,2,1]]; floor mode (Keras
    MaxPooling2D) gives 2x2 (CONCEPTS P14, H6). Same result on the printed map."""
    for fmap in (FMAP_002, FMAP_002_PRINTED):
        ceil = F.max_pool2d(nchw(fmap), 2, stride=2, ceil_mode=True)[0, 0]
        np.testing.assert_array_equal(ceil, POOLED_002)
        floor = F.max_pool2d(nchw(fmap), 2, stride=2)[0, 0]
        np.testing.assert_array_equal(floor, [[1, 1], [4, 2]])
    assert glassnet.output_size(5, 2, stride=2, ceil_mode=True) == 3
    assert glassnet.output_size(5, 2, stride=2) == 2


def test_s002_maxpool_partial_row() -> None:
    """002 L254-262: the first pooled row "1 1 0" -- its last window is the partial
    2x1 column [0, 0] at the right edge (L269)."""
    out = F.max_pool2d(nchw(FMAP_002), 2, stride=2, ceil_mode=True)[0, 0]
    np.testing.assert_array_equal(out[0], [1, 1, 0])
    # the partial window reduces over valid cells only: all-negative input stays negative
    neg = -1.0 - np.arange(25.0).reshape(5, 5)
    out_neg = F.max_pool2d(nchw(neg), 2, stride=2, ceil_mode=True)[0, 0]
    assert out_neg[0, 2] == max(neg[0, 4], neg[1, 4])
    assert out_neg[2, 2] == neg[4, 4]


def test_s002_flatten_rows() -> None:
    """002 L343-367: flatten by rows: [[1,1,0],[4,2,1],[0,2,1]] -> 1,1,0,4,2,1,0,2,1."""
    out = F.flatten(nchw(POOLED_002))
    assert out.shape == (1, 9)
    np.testing.assert_array_equal(out[0], [1, 1, 0, 4, 2, 1, 0, 2, 1])


def test_s002_pipeline_conv_pool_flatten() -> None:
    """002 L329-378: convolution -> max pooling (ceil) -> flattening on the 7x7 image,
    and many feature maps flattened in C, H, W order (CONCEPTS I2)."""
    fmap = F.conv2d(nchw(IMG_002_7x7), oihw(K_002))
    pooled = F.max_pool2d(fmap, 2, stride=2, ceil_mode=True)
    vec = F.flatten(pooled)
    np.testing.assert_array_equal(vec, [[1, 1, 0, 4, 2, 1, 0, 2, 1]])
    # two feature maps: channel 0 first, then channel 1, each by rows
    w2 = np.stack([K_002, K_002[::-1, ::-1]])[:, None]
    maps = F.max_pool2d(F.conv2d(nchw(IMG_002_7x7), w2), 2, stride=2, ceil_mode=True)
    flat = F.flatten(maps)
    assert flat.shape == (1, 18)
    np.testing.assert_array_equal(flat[0], maps[0].reshape(-1))
    np.testing.assert_array_equal(flat[0, :9], [1, 1, 0, 4, 2, 1, 0, 2, 1])


def test_s002_keras_tutorial_model() -> None:
    """002 L409-416: the TensorFlow tutorial CNN on 32x32x3 input (channels-first here):
    30x30x32 -> 15x15x32 -> 13x13x64 -> 6x6x64 -> 4x4x64; params 896 / 18,496 /
    36,928, total 56,320. MaxPooling2D((2,2)) floors 13 -> 6 (CONCEPTS P14)."""
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
    )
    s = glassnet.summary(model, (1, 3, 32, 32))
    assert [_row_shape(r) for r in s.rows][-8:] == [
        (32, 30, 30),
        (32, 30, 30),
        (32, 15, 15),
        (64, 13, 13),
        (64, 13, 13),
        (64, 6, 6),
        (64, 4, 4),
        (64, 4, 4),
    ]
    assert [p for p in (_row_params(r) for r in s.rows) if p] == [896, 18_496, 36_928]
    assert s.total_params == 56_320
    assert s.trainable_params == 56_320
    assert model.forward(np.zeros((2, 3, 32, 32), dtype=np.float32)).shape == (2, 64, 4, 4)


# =================================================================== seed 003


def test_s003_conv_5x5_subscript_kernel() -> None:
    """003 L45-58: 5x5 input * subscript kernel [[0,1,2],[2,2,0],[0,1,2]] ->
    [[12,12,17],[10,17,19],[9,6,14]] (cross-correlation)."""
    out = conv(IMG_003_5x5, K_003)
    np.testing.assert_array_equal(out, OUT_003)
    assert not np.array_equal(conv(IMG_003_5x5, K_003, flip=True), OUT_003)


def test_s003_outsize_5x5_k3() -> None:
    """003 L45-58: 5x5, 3x3, no padding, stride 1 -> 3x3."""
    assert glassnet.output_size(5, 3) == 3


def test_s003_outsize_5x5_k3_pad1() -> None:
    """003 L62 ("With Padding", figure lost): 5x5, 3x3, P=1 -> 5x5."""
    assert glassnet.output_size(5, 3, stride=1, padding=1) == 5


def test_s003_outsize_5x5_k3_pad1_s2() -> None:
    """003 L66 ("With Stride 2", figure lost): 5x5, 3x3, P=1, S=2 -> 3x3."""
    assert glassnet.output_size(5, 3, stride=2, padding=1) == 3


def test_s003_conv_5x5_pad1_derived() -> None:
    """003 L62 (values derived, not printed): P=1 gives a 5x5 map whose interior is the
    printed 3x3 result."""
    expected = np.array(
        [
            [6, 14, 17, 11, 3],
            [14, 12, 12, 17, 11],
            [8, 10, 17, 19, 13],
            [11, 9, 6, 14, 12],
            [6, 4, 4, 6, 4],
        ]
    )
    out = conv(IMG_003_5x5, K_003, padding=1)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out[1:-1, 1:-1], OUT_003)
    np.testing.assert_array_equal(expected, naive_xcorr(IMG_003_5x5, K_003, pad=1))


def test_s003_conv_5x5_pad1_stride2_derived() -> None:
    """003 L66 (values derived, not printed): P=1, S=2 -> 3x3 [[6,17,3],[8,17,13],[6,4,4]]."""
    expected = np.array([[6, 17, 3], [8, 17, 13], [6, 4, 4]])
    out = conv(IMG_003_5x5, K_003, padding=1, stride=2)
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(expected, naive_xcorr(IMG_003_5x5, K_003, stride=2, pad=1))


def test_s003_strided_equals_subsampled() -> None:
    """003 L169-171: a strided convolution keeps only outputs a fixed distance apart:
    conv(x, S) == conv(x, 1)[::S, ::S] at the same padding (CONCEPTS D3)."""
    rng = np.random.default_rng(3)
    cases = [
        (IMG_003_5x5, K_003),
        (rng.integers(-9, 10, size=(11, 8)), rng.integers(-3, 4, (3, 2))),
    ]
    for img, k in cases:
        for pad in (0, 1, 2):
            full = conv(img, k, padding=pad)
            for s in (2, 3):
                np.testing.assert_array_equal(conv(img, k, padding=pad, stride=s), full[::s, ::s])


def _brute_force_rf(specs: list[tuple[int, int]], size: int = 31) -> int:
    """Receptive field by backprop: all-ones kernels, gradient 1 at one central output;
    the extent of the non-zero input gradient is the receptive field."""
    x = np.ones((1, 1, size, size))
    ctxs = []
    for k, s in specs:
        x, ctx = F.conv2d_forward(x, np.ones((1, 1, k, k)), stride=s)
        ctxs.append(ctx)
    g = np.zeros_like(x)
    g[0, 0, x.shape[2] // 2, x.shape[3] // 2] = 1.0
    for ctx in reversed(ctxs):
        g = F.conv2d_backward(g, ctx)[0]
    rows = np.flatnonzero(g[0, 0].any(axis=1))
    return int(rows[-1] - rows[0] + 1)


def _summary_rf(specs: list[tuple[int, int]], size: int = 31) -> tuple[int, int]:
    model = nn.Sequential(*[nn.Conv2d(1, 1, k, stride=s) for k, s in specs])
    last = glassnet.summary(model, (1, 1, size, size)).rows[-1]
    return int(np.max(last.rf)), int(np.max(last.jump))


def test_s003_receptive_field() -> None:
    """003 L155-191: a 3x3 conv on top of a 3x3 stride-2 conv sees 7x7 of the input,
    vs 5x5 for two stride-1 3x3 convs (CONCEPTS L1, L3); analytic r += (k-1)*jump,
    jump *= s equals brute force."""

    def analytic(specs: list[tuple[int, int]]) -> int:
        r, j = 1, 1
        for k, s in specs:
            r += (k - 1) * j
            j *= s
        return r

    for specs, rf, jump in [
        ([(3, 2), (3, 1)], 7, 2),
        ([(3, 1), (3, 1)], 5, 1),
        ([(3, 1)], 3, 1),
        ([(3, 2), (3, 2), (3, 1)], 15, 4),
    ]:
        assert analytic(specs) == rf
        assert _brute_force_rf(specs) == rf
        assert _summary_rf(specs) == (rf, jump)


def test_s003_7x7_grid_32() -> None:
    """003 L210: 224x224 reduced to 7x7 by the 5th block: each pixel stands for a 32x32
    grid -- the cumulative stride (jump) 224/7 = 32, not the receptive field size."""
    n = 224
    for _ in range(5):
        n = glassnet.output_size(n, 2, stride=2)
    assert n == 7 and 224 // n == 32
    model = nn.Sequential(*[nn.MaxPool2d(2) for _ in range(5)])
    s = glassnet.summary(model, (1, 3, 224, 224))
    assert _row_shape(s.rows[-1]) == (3, 7, 7)
    assert int(np.max(s.rows[-1].jump)) == 32


def test_s001_s003_dataset_arith() -> None:
    """003 L271/L299: MNIST 28x28 monochrome, digits 0-9 -> [1,28,28] = 784 inputs;
    003 L280/L303-305: CIFAR-10 32x32x3, 10 classes -> 3,072 inputs; 003 L324-326:
    1000 classes x 1000 images = 1,000,000; 001 L223-225: ILSVRC 1000 classes,
    1.2 million training / 100,000 test images."""
    assert F.flatten(np.zeros((2, 1, 28, 28))).shape == (2, 784)
    assert F.flatten(np.zeros((2, 3, 32, 32))).shape == (2, 3072)
    assert nn.Linear(784, 10).forward(np.zeros((2, 784), dtype=np.float32)).shape == (2, 10)
    assert 1000 * 1000 == 1_000_000
    assert 1_200_000 / (1000 * 1000) == 1.2  # the lecture's "1000 images/class" is round
    cifar_classes = ["airplane", "automobile", "bird", "cat", "deer"]
    cifar_classes += ["dog", "frog", "horse", "ship", "truck"]
    assert len(cifar_classes) == 10


# =================================================================== seed 004


def test_s004_mlp_inputs_512() -> None:
    """004 L37-38: a 512x512 image fed to an MLP needs 262,144 input values."""
    assert 512 * 512 == 262_144
    assert F.flatten(np.zeros((1, 1, 512, 512), dtype=np.float32)).shape == (1, 262_144)
    assert n_params(nn.Linear(262_144, 1)) == 262_145


def test_s004_kernel_design_x10() -> None:
    """004 L91-110: the x10 5x5 image * [[1,0,1],[0,1,0],[1,0,1]] (the output was lost):
    10 x the 000 example's result, [[40,30,40],[20,40,30],[20,30,40]]."""
    np.testing.assert_array_equal(IMG_004_X10, 10 * IMG_000_5x5)
    out = conv(IMG_004_X10, K_X)
    np.testing.assert_array_equal(out, [[40, 30, 40], [20, 40, 30], [20, 30, 40]])


def test_s004_single_channel_two_filters() -> None:
    """004 L475-500: input [1,H,W], kernels [[0,-1,0],[-1,4,-1],[0,-1,0]] and emboss,
    weight [2,1,3,3] -> output [2,H,W] with padding 1 ([2,H-2,W-2] without)."""
    k1 = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]])
    k2 = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    w = np.stack([k1, k2])[:, None]
    assert w.shape == (2, 1, 3, 3)
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, size=(6, 9))
    x = img[None, None]
    out = F.conv2d(x, w, padding=1)
    assert out.shape == (1, 2, 6, 9)
    assert F.conv2d(x, w).shape == (1, 2, 4, 7)
    np.testing.assert_array_equal(out[0, 0], naive_xcorr(img, k1, pad=1))
    np.testing.assert_array_equal(out[0, 1], naive_xcorr(img, k2, pad=1))
    layer = nn.Conv2d(1, 2, 3, padding=1)
    assert layer.weight.data.shape == (2, 1, 3, 3)
    assert layer.forward(x.astype(np.float32)).shape == (1, 2, 6, 9)


def test_s004_multi_channel_sum() -> None:
    """004 L503-551: input [3,H,W]; per-channel kernels [[-1,0,1]]x3, emboss and 1/9 box;
    the three per-channel results are summed (Σ, L528) into one channel, weight
    [1,3,3,3] -> output [1,H,W]; one bias per output channel (CONCEPTS E2)."""
    kernels = [get_kernel("vertical_edge_negative"), get_kernel("emboss"), get_kernel("box_blur")]
    np.testing.assert_array_equal(kernels[0], [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]])
    w = np.stack(kernels)[None]
    assert w.shape == (1, 3, 3, 3)
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, size=(3, 7, 5)).astype(np.float64)
    out = F.conv2d(img[None], w, padding=1)
    assert out.shape == (1, 1, 7, 5)
    per_channel = sum(naive_xcorr(img[c], kernels[c], pad=1) for c in range(3))
    np.testing.assert_allclose(out[0, 0], per_channel, rtol=1e-12, atol=1e-9)
    out_b = F.conv2d(img[None], w, np.array([2.5]), padding=1)
    np.testing.assert_allclose(out_b[0, 0], per_channel + 2.5, rtol=1e-12, atol=1e-9)
    # integer channels only (no 1/9): exact
    w_int = np.stack(kernels[:2])[None]
    exact = F.conv2d(img[None, :2], w_int, padding=1)[0, 0]
    np.testing.assert_array_equal(exact, sum(naive_xcorr(img[c], kernels[c], pad=1) for c in range(2)))


def test_s004_maxpool_halves_shape() -> None:
    """004 L568-582: max pool [C_in,H,W] -> [C_in,H/2,W/2]; for odd sizes floor (default)
    or ceil (ceil_mode=True) (CONCEPTS P15, H10)."""
    assert F.max_pool2d(np.zeros((1, 5, 8, 6)), 2).shape == (1, 5, 4, 3)
    assert F.max_pool2d(np.zeros((1, 5, 7, 9)), 2).shape == (1, 5, 3, 4)
    assert F.max_pool2d(np.zeros((1, 5, 7, 9)), 2, ceil_mode=True).shape == (1, 5, 4, 5)
    assert nn.MaxPool2d(2).forward(np.zeros((2, 4, 10, 12), dtype=np.float32)).shape == (
        2,
        4,
        5,
        6,
    )


def test_s004_sigmoid() -> None:
    """004 L395-402: binary head, 1 output neuron + sigmoid in (0, 1);
    P(cat) = σ(z), P(dog) = 1 - P(cat) = σ(-z)."""
    z = np.array([-30.0, -2.0, 0.0, 0.5, 3.0, 30.0])
    p = F.sigmoid(z)
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z)), rtol=1e-12)
    assert np.all((p > 0) & (p < 1))
    assert F.sigmoid(np.array([0.0]))[0] == 0.5
    np.testing.assert_allclose(1 - p, F.sigmoid(-z), rtol=1e-12, atol=1e-15)
    big = F.sigmoid(np.array([-1000.0, 1000.0]))
    assert np.all(np.isfinite(big))
    np.testing.assert_array_equal(big, [0.0, 1.0])


def test_s004_softmax() -> None:
    """004 L406-417: multi-class head (digits 0-9): softmax e^{z_i} / sum_{j=1}^{K} e^{z_j}
    (the seed lost the upper limit K, CONCEPTS P18); sums to 1, shift-invariant, stable."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=(4, 10))
    p = F.softmax(z, axis=-1)
    np.testing.assert_allclose(p, np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(F.softmax(z + 1000.0, axis=-1), p, rtol=1e-9)
    big = F.softmax(np.array([[1000.0, 0.0, -1000.0]]), axis=-1)
    assert np.all(np.isfinite(big))
    np.testing.assert_allclose(big, [[1.0, 0.0, 0.0]], atol=1e-300)
    assert p.shape == (4, 10) and int(np.argmax(p[0])) == int(np.argmax(z[0]))


# =================================================================== section F


def test_all_named_kernels_catalog() -> None:
    """CONCEPTS F / P21 (000 L264-270, 001 L28-56, 003 L118-124, 004 L112-121, L482-536):
    the catalogue's sums and equalities (element-by-element checks: tests/test_kernels.py)."""
    g = get_kernel
    for name in ["edge_detection_1", "laplacian", "outline", "top_sobel", "left_sobel"]:
        assert g(name).sum() == 0
    for name in ["sharpen", "box_blur", "gaussian_blur", "emboss", "identity"]:
        assert g(name).sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(g("outline"), g("edge_detection_3"))
    np.testing.assert_array_equal(g("vertical_edge_negative"), -g("vertical_edge"))
    np.testing.assert_array_equal(g("negative_laplacian"), -g("edge_detection_2"))
    np.testing.assert_array_equal(g("right_sobel"), -g("left_sobel"))
    np.testing.assert_array_equal(g("horizontal_sobel"), g("left_sobel"))
    # identity: with padding 1 the image comes back unchanged (F1)
    np.testing.assert_array_equal(conv(IMG_003_5x5, g("identity"), padding=1), IMG_003_5x5)
