"""The machinery every recipe, study, benchmark and search shares, one concern a module.

- `core.recipe`: the one run sequence and command line every recipe goes through.
- `core.config`: the shared training config, flags from config dataclasses,
  precision.
- `core.data`: TFDS datasets, some prepared offline (`python -m core.data`),
  and the tf.data pipelines a run trains on.
- `core.training`: the optimizer and its schedule, callbacks, `fit` and the
  one read of the test split.
- `core.runs`: run directories, config.json and checkpoints (resume).
- `core.storage`: atomic JSON, checksums, and a one-line error for a full disk.
- `core.export`: versioned SavedModels in TF Serving's layout, checked in a
  fresh interpreter.
- `core.images`, `core.text`: what the image and the text recipes share.
- `core.distribute`, `core.loop`: several devices or workers.

Recipes live in `recipes/`, one module per architecture; they call these.
"""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) hides a run's own
# progress lines; keep warnings and errors. An explicit setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
