"""Front ends that build graphc graphs: ONNX import/export and (later) the Python DSL."""
