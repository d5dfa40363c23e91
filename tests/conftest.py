"""Every test starts from Keras's defaults: recipes set a global dtype policy."""

import keras
import pytest


@pytest.fixture(autouse=True)
def keras_defaults():
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
