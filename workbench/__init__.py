"""A model-optimization workbench for PyTorch -> ONNX: recipes, validated artifacts, reports."""

__version__ = "0.1.0"
