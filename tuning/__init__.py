"""keras-tuner searches over the recipes' hyperparameters: `python -m tuning <recipe> ...`."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
