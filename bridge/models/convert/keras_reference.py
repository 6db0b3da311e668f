"""Plain-numpy forward pass of a Keras graph read by ``load_keras_h5``: the converter's test oracle.

Written from Keras/TF semantics (NHWC, TF "same" padding, depthwise channel
order c*multiplier+m) independently of the ONNX graph builder, in float64, with
direct windowed sums rather than any ONNX or im2col reuse, so a transposition or
padding mistake in the converter shows up as a mismatch instead of being
reproduced. Used by tests only.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bridge.models.convert.keras_h5 import KerasConversionError, KerasLayer, KerasModel


def _pair(value: int | list[int] | tuple[int, ...]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


def _pad_nhwc(
    x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int], padding: str, fill: float
) -> np.ndarray:
    """TF padding: "same" gives ceil(in/stride) outputs, with the odd padded pixel after, not before."""
    if padding == "valid":
        return x
    pads = []
    for size, k, s in zip(x.shape[1:3], kernel, strides, strict=True):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=fill)


def _windows(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int]) -> np.ndarray:
    """(N, Ho, Wo, C, kh, kw) views of every window the layer reads."""
    win = sliding_window_view(x, kernel, axis=(1, 2))
    return win[:, :: strides[0], :: strides[1]]


def conv2d(
    x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, strides: tuple[int, int], padding: str
) -> np.ndarray:
    """Keras Conv2D: kernel (kh, kw, cin, cout)."""
    kh, kw = kernel.shape[:2]
    win = _windows(_pad_nhwc(x, (kh, kw), strides, padding, 0.0), (kh, kw), strides)
    out = np.einsum("nhwcij,ijco->nhwo", win, kernel)
    return out if bias is None else out + bias


def depthwise_conv2d(x: np.ndarray, kernel: np.ndarray, strides: tuple[int, int], padding: str) -> np.ndarray:
    """Keras depthwise: kernel (kh, kw, cin, mult), output channel c*mult + m."""
    kh, kw, cin, mult = kernel.shape
    win = _windows(_pad_nhwc(x, (kh, kw), strides, padding, 0.0), (kh, kw), strides)
    out = np.einsum("nhwcij,ijcm->nhwcm", win, kernel)
    return out.reshape(*out.shape[:3], cin * mult)


def max_pool(x: np.ndarray, pool: tuple[int, int], strides: tuple[int, int], padding: str) -> np.ndarray:
    """TF max pooling never picks a padded cell: pad with -inf."""
    win = _windows(_pad_nhwc(x, pool, strides, padding, -np.inf), pool, strides)
    return win.max(axis=(4, 5))


def _activation(x: np.ndarray, name: str) -> np.ndarray:
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if name == "tanh":
        return np.tanh(x)
    raise KerasConversionError(f"reference: activation {name!r} not implemented")


def _layer(layer: KerasLayer, xs: list[np.ndarray]) -> np.ndarray:
    cfg = layer.config
    w = {k: v.astype(np.float64) for k, v in layer.weights.items()}
    kind = layer.class_name
    if kind == "Add":
        return np.sum(xs, axis=0)
    (x,) = xs
    if kind == "Conv2D":
        out = conv2d(
            x,
            w["kernel"],
            w.get("bias") if cfg.get("use_bias", True) else None,
            _pair(cfg.get("strides", 1)),
            cfg.get("padding", "valid"),
        )
        return _activation(out, cfg.get("activation", "linear"))
    if kind == "SeparableConv2D":
        mid = depthwise_conv2d(x, w["depthwise_kernel"], _pair(cfg.get("strides", 1)), cfg.get("padding", "valid"))
        out = np.einsum("nhwc,co->nhwo", mid, w["pointwise_kernel"][0, 0])
        if cfg.get("use_bias", True):
            out = out + w["bias"]
        return _activation(out, cfg.get("activation", "linear"))
    if kind == "BatchNormalization":
        c = x.shape[-1]
        gamma = w["gamma"] if cfg.get("scale", True) else np.ones(c)
        beta = w["beta"] if cfg.get("center", True) else np.zeros(c)
        eps = float(cfg.get("epsilon", 1e-3))
        return (x - w["moving_mean"]) / np.sqrt(w["moving_variance"] + eps) * gamma + beta
    if kind == "Activation":
        return _activation(x, cfg["activation"])
    if kind == "MaxPooling2D":
        pool = _pair(cfg.get("pool_size", 2))
        return max_pool(x, pool, _pair(cfg.get("strides") or pool), cfg.get("padding", "valid"))
    if kind == "GlobalAveragePooling2D":
        return x.mean(axis=(1, 2))
    raise KerasConversionError(f"reference: layer type {kind!r} not implemented")


def forward(model: KerasModel, x: np.ndarray) -> np.ndarray:
    """Run the graph on NHWC input ``x``; returns the output layer's value in float64."""
    values: dict[str, np.ndarray] = {}
    for layer in model.layers:
        if layer.class_name == "InputLayer":
            values[layer.name] = np.asarray(x, dtype=np.float64)
            continue
        values[layer.name] = _layer(layer, [values[name] for name in layer.inbound])
    return values[model.outputs[0]]
