"""Keras 3 recipes on TensorFlow: one module per architecture, `python -m recipes.<name>`.

What they share (data, training conventions, export, text) lives in `core/`.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides a recipe's own
# progress lines; keep warnings and errors. An explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
