"""Swish activation layer with a fixed or trainable beta. Needs only keras."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="recipes")
class Swish(keras.layers.Layer):
    """Swish: `f(x) = x * sigmoid(beta * x)`.

    With `beta = 1` and `trainable_beta=False` this is SiLU (`keras.activations.silu`);
    as `beta` grows it approaches ReLU, and at `beta = 0` it is `x / 2`.
    With `trainable_beta=True`, `beta` is learned: one scalar, or one per
    channel (last axis) with `per_channel=True`.

    Args:
        beta: initial (or fixed) value of beta.
        trainable_beta: whether beta is learned.
        per_channel: one beta per channel of the last axis instead of one
            shared scalar.
        beta_regularizer: optional regularizer for beta.
        beta_constraint: optional constraint for beta.
        **kwargs: base layer keyword arguments, such as `name` and `dtype`.

    Input shape:
        Arbitrary; with `per_channel=True` the last axis must be known.

    Output shape:
        Same as the input.

    Reference:
        - [Ramachandran et al., 2017](https://arxiv.org/abs/1710.05941),
          "Searching for Activation Functions".
    """

    def __init__(
        self,
        beta=1.0,
        trainable_beta=True,
        per_channel=False,
        beta_regularizer=None,
        beta_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(beta, bool) or not isinstance(beta, (int, float)):
            raise ValueError(f"Argument `beta` must be a number. Received: beta={beta}")
        self.beta_value = float(beta)
        self.trainable_beta = bool(trainable_beta)
        self.per_channel = bool(per_channel)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        if self.per_channel:
            if input_shape[-1] is None:
                raise ValueError(
                    "`per_channel=True` needs a known last axis. "
                    f"Received: input_shape={input_shape}"
                )
            shape = (input_shape[-1],)
            # one beta per channel: a call with another channel count is refused
            self.input_spec = keras.layers.InputSpec(min_ndim=1, axes={-1: input_shape[-1]})
        else:
            shape = ()
        self.beta = self.add_weight(
            name="beta",
            shape=shape,
            initializer=keras.initializers.Constant(self.beta_value),
            regularizer=self.beta_regularizer,
            constraint=self.beta_constraint,
            trainable=self.trainable_beta,
        )

    def call(self, inputs):
        return inputs * ops.sigmoid(self.beta * inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta_value,
                "trainable_beta": self.trainable_beta,
                "per_channel": self.per_channel,
                "beta_regularizer": keras.regularizers.serialize(self.beta_regularizer),
                "beta_constraint": keras.constraints.serialize(self.beta_constraint),
            }
        )
        return config
