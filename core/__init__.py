"""The machinery every recipe, study, benchmark and search shares, one concern a module.

- `core.data`: TFDS datasets, two of them prepared offline (`python -m core.data`).
- `core.training`: flags, seeds, precision, run directories, the tf.data
  pipeline, callbacks, resume and metrics.
- `core.export`: versioned SavedModels in TF Serving's layout, checked in a
  fresh interpreter.
- `core.text`: what the text recipes share (tokenization, raw-string export).

Recipes live in `recipes/`, one module per architecture; they call these.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides a run's own
# progress lines; keep warnings and errors. An explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
