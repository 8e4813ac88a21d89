"""ONNX front end: import a model (path, bytes or ModelProto) into a graphc Graph."""
from .importer import import_model, load_model_proto

__all__ = ["import_model", "load_model_proto"]
