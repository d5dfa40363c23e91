"""Every test starts from Keras's defaults: recipes set a global dtype policy.

Under pytest-xdist (`make test`: one worker per core), each worker's
TensorFlow, and every process it starts, uses one thread for its ops, so two
workers do not fight over the two cores."""

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # before TensorFlow is imported
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def keras_defaults():
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
