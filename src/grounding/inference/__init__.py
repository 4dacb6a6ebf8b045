"""Inference, one way for every caller: a model opened from its spec for a device and precision
(`engine.load_model`), the choice of engine for zero-shot classification (`engine.open_classifier`:
PyTorch, or onnxruntime without PyTorch), one batched encoder for texts and one for images
(`encode.py`), and one way from similarities to probabilities (`scores.py`). The command line,
the server, evaluation, retrieval and the demo all call these."""
