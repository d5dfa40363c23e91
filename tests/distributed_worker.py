"""One worker of the two-process loop test (tests/test_distributed.py); not a test itself.

Trains a linear model with plain SGD through `core.loop.fit` under
MultiWorkerMirroredStrategy (TF_CONFIG from the test) and prints its weights
as JSON, so the test can compare them with one device's SGD on the global
batches.
"""

import json

import keras
import numpy as np
import tensorflow as tf

from core import distribute, loop

GLOBAL_BATCH, STEPS = 8, 5


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(GLOBAL_BATCH * STEPS, 3)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5], "float32") + 0.3).astype("float32")[:, None]
    return x, y


def model():
    inputs = keras.Input((3,))
    m = keras.Model(inputs, keras.layers.Dense(1, kernel_initializer="ones")(inputs))
    m.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return m


if __name__ == "__main__":
    strategy = distribute.get("multi_worker")
    x, y = data()
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    plain = model()
    with distribute.replica_of(plain, strategy) as twin:
        loop.fit(twin, batches.repeat(), STEPS, batches, epochs=1, strategy=strategy, verbose=0)
    print("WEIGHTS " + json.dumps([w.tolist() for w in plain.get_weights()]), flush=True)
