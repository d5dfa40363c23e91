"""Transformer encoder blocks for text: token + position embedding, and an encoder layer.

Copy this file alone into a project: it needs only keras. Unlike keras-io's
example TransformerBlock, both layers have a complete `get_config`, so a model
using them saves and reloads.

    x = TokenAndPositionEmbedding(vocab_size, sequence_length, 64)(token_ids)
    x = TransformerEncoder(num_heads=4, intermediate_dim=128)(x)   # padding mask flows
    x = MaskedAveragePooling1D()(x)                                # averages unmasked tokens
"""

import keras
from keras import ops


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Argument `{name}` must be a positive integer. Received: {name}={value}")
    return value


@keras.saving.register_keras_serializable(package="recipes")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Sum of a token embedding and a learned position embedding.

        output[b, t] = token_embeddings[ids[b, t]] + position_embeddings[t]

    With `mask_zero=True`, token id 0 is padding: the layer emits a mask
    `ids != 0` that following layers (TransformerEncoder, pooling) honour.

    Args:
        vocabulary_size: number of token ids (>= 2 with padding).
        sequence_length: the longest sequence the position table covers.
        embedding_dim: size of each embedding vector.
        mask_zero: whether id 0 is padding.
        embeddings_initializer: initializer of both tables.
        **kwargs: base layer keyword arguments.

    Input shape:
        `(batch, length)` integer ids, `length <= sequence_length`.

    Output shape:
        `(batch, length, embedding_dim)`.

    Reference:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762),
          "Attention Is All You Need" (learned positions as in BERT,
          [Devlin et al., 2018](https://arxiv.org/abs/1810.04805)).
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        mask_zero=True,
        embeddings_initializer="uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = _positive_int("vocabulary_size", vocabulary_size)
        self.sequence_length = _positive_int("sequence_length", sequence_length)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.supports_masking = self.mask_zero

    def build(self, input_shape):
        self.input_spec = keras.layers.InputSpec(ndim=2)
        self.token_embeddings = self.add_weight(
            name="token_embeddings",
            shape=(self.vocabulary_size, self.embedding_dim),
            initializer=self.embeddings_initializer,
        )
        self.position_embeddings = self.add_weight(
            name="position_embeddings",
            shape=(self.sequence_length, self.embedding_dim),
            initializer=self.embeddings_initializer,
        )

    def call(self, inputs):
        ids = ops.cast(inputs, "int32")
        length = ops.shape(ids)[-1]
        tokens = ops.take(self.token_embeddings, ids, axis=0)
        # a tensor, not the Variable: JAX's slice refuses a Variable (__jax_array__)
        table = ops.convert_to_tensor(self.position_embeddings)
        positions = ops.slice(table, (0, 0), (length, self.embedding_dim))
        return ops.cast(tokens + positions, self.compute_dtype)

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(inputs, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embedding_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "mask_zero": self.mask_zero,
                "embeddings_initializer": keras.initializers.serialize(
                    self.embeddings_initializer
                ),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="recipes")
class TransformerEncoder(keras.layers.Layer):
    """One transformer encoder block (post-layer-norm, as in the original paper).

        h = LayerNorm(x + Dropout(MultiHeadSelfAttention(x, mask)))
        y = LayerNorm(h + Dropout(Dense(Dense(h, activation), embedding_dim)))

    Padded positions (mask False) are never attended to, and the mask passes
    through to the next layer.

    Args:
        num_heads: attention heads; must divide the embedding size.
        intermediate_dim: width of the feed-forward hidden layer.
        dropout: dropout rate after attention and after the feed-forward
            network, in [0, 1).
        activation: feed-forward activation.
        layer_norm_epsilon: epsilon of both layer norms.
        kernel_initializer: initializer of the dense and attention kernels.
        **kwargs: base layer keyword arguments.

    Input shape:
        `(batch, length, embedding_dim)`, with an optional mask `(batch, length)`.

    Output shape:
        Same as the input.

    Reference:
        - [Vaswani et al., 2017](https://arxiv.org/abs/1706.03762),
          "Attention Is All You Need".
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout=0.1,
        activation="relu",
        layer_norm_epsilon=1e-6,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = _positive_int("num_heads", num_heads)
        self.intermediate_dim = _positive_int("intermediate_dim", intermediate_dim)
        if not 0 <= dropout < 1:
            raise ValueError(f"Argument `dropout` must be in [0, 1). Received: dropout={dropout}")
        self.dropout = dropout
        self.activation = keras.activations.get(activation)
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        embedding_dim = input_shape[-1]
        if embedding_dim is None or embedding_dim % self.num_heads:
            raise ValueError(
                "The embedding size must be a multiple of `num_heads`. "
                f"Received: embedding_dim={embedding_dim}, num_heads={self.num_heads}"
            )
        self.input_spec = keras.layers.InputSpec(ndim=3, axes={-1: embedding_dim})
        common = {"dtype": self.dtype_policy, "kernel_initializer": self.kernel_initializer}
        self.attention = keras.layers.MultiHeadAttention(
            self.num_heads, embedding_dim // self.num_heads, dropout=self.dropout,
            name="attention", **common,
        )
        self.attention.build(input_shape, input_shape)
        self.attention_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm", dtype=self.dtype_policy
        )
        self.attention_norm.build(input_shape)
        self.intermediate = keras.layers.Dense(
            self.intermediate_dim, activation=self.activation, name="intermediate", **common
        )
        self.intermediate.build(input_shape)
        self.output_dense = keras.layers.Dense(embedding_dim, name="output_dense", **common)
        self.output_dense.build((*input_shape[:-1], self.intermediate_dim))
        self.output_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="output_norm", dtype=self.dtype_policy
        )
        self.output_norm.build(input_shape)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def call(self, inputs, mask=None, training=None):
        attention_mask = None
        if mask is not None:
            mask = ops.cast(mask, "bool")
            # (batch, query, key): a query attends only to unpadded keys.
            attention_mask = ops.logical_and(mask[:, :, None], mask[:, None, :])
        attended = self.attention(
            inputs, inputs, attention_mask=attention_mask, training=training
        )
        hidden = self.attention_norm(inputs + self.dropout_layer(attended, training=training))
        feed_forward = self.output_dense(self.intermediate(hidden))
        return self.output_norm(hidden + self.dropout_layer(feed_forward, training=training))

    def compute_mask(self, inputs, mask=None):
        return mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout": self.dropout,
                "activation": keras.activations.serialize(self.activation),
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="recipes")
class MaskedAveragePooling1D(keras.layers.Layer):
    """Average over the unmasked steps of a sequence; zeros where none is unmasked.

        output[b] = sum_t mask[b, t] * x[b, t] / max(1, sum_t mask[b, t])

    Keras's `GlobalAveragePooling1D` divides by the mask's sum too, which
    gives NaN for a fully padded sequence (an empty string after
    tokenization); this layer gives zeros instead. Without a mask it is the
    plain mean over steps.

    Args:
        **kwargs: base layer keyword arguments.

    Input shape:
        `(batch, steps, features)`, with an optional mask `(batch, steps)`.

    Output shape:
        `(batch, features)`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True
        self.input_spec = keras.layers.InputSpec(ndim=3)

    def call(self, inputs, mask=None):
        if mask is None:
            return ops.mean(inputs, axis=1)
        weights = ops.cast(ops.expand_dims(mask, -1), inputs.dtype)
        total = ops.sum(inputs * weights, axis=1)
        return total / ops.maximum(ops.sum(weights, axis=1), ops.cast(1, inputs.dtype))

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])

    def get_config(self):
        return super().get_config()
