"""What the image recipes share: the dataset's image facts and a raw-pixel export.

- `facts(name)`: (image shape, class names) of an image dataset, refusing
  anything that is not uint8 images.
- `export_classifier`: a SavedModel whose signature takes raw uint8 images,
  `image` `[batch, height, width, channels]`, and answers `probabilities`,
  `class_id` and `class_name` (ONNX and LiteRT files beside it on request,
  with `labels.txt`); a second signature, `image_bytes`, takes the encoded
  files themselves. Both are checked in a fresh interpreter.
"""

import os

import numpy as np
import tensorflow as tf

from core import data, export, files
from core.config import ConfigError


def facts(train, classifier=True):
    """(image shape, class names) of `train.dataset`: a TFDS image classification
    dataset or a folder of class folders of images (of images alone, for a model
    that is not a `classifier`)."""
    name = train.dataset
    if files.is_path(name):
        if os.path.isfile(os.path.expanduser(name)):
            raise ConfigError(f"{name}: a file; each image recipe needs a folder of class "
                              "folders of images")
        found = data.source(name, train.validation_percent, **data.own_options(train))
        if found.kind != "image":
            raise ConfigError(f"{name}: holds {found.kind}s; each image recipe needs a folder "
                              "of class folders of images")
        if classifier:
            data.require_classes(found)
        return found.image_shape, found.class_names
    info = data.info(name)
    image_key, label_key = info.supervised_keys
    feature = info.features[image_key]
    shape = tuple(feature.shape)
    if len(shape) != 3 or feature.dtype != tf.uint8:
        raise ConfigError(
            f"{name}: each image recipe needs uint8 images of shape (height, width, channels); "
            f"its {image_key!r} feature is {feature}")
    return shape, info.features[label_key].names


def sample(train, count):
    """The first `count` test images of `train.dataset`, as a uint8 array."""
    return next(iter(data.load_split(train, "test").take(count).batch(count)))[0].numpy()


def serving_function(model, class_names):
    """Raw uint8 images -> probabilities, class id and class name."""
    def serve(image):
        probabilities = model(image, training=False)
        class_id = tf.argmax(probabilities, axis=-1)
        # The names are a constant of the graph, not a captured tensor (which
        # tf2onnx would turn into an input).
        return {"probabilities": probabilities, "class_id": class_id,
                "class_name": tf.gather(tf.constant(class_names), class_id)}

    return serve


def bytes_serving_function(model, class_names, shape):
    """Encoded image files (JPEG, PNG, GIF, BMP), a string batch `image_bytes` ->
    the raw-pixel signature's outputs: decoded, converted to `shape`'s channels and
    resized as training did (`files.decode_image`). Bytes that are not an image
    fail the request with TensorFlow's own message; an empty batch answers empty."""
    pixels = export.guarded(serving_function(model, class_names),
                            {"image": tf.TensorSpec((None, *shape), tf.uint8)})

    def serve(image_bytes):
        images = tf.cond(
            tf.size(image_bytes) > 0,
            lambda: tf.map_fn(lambda b: files.decode_image(b, shape), image_bytes,
                              fn_output_signature=tf.TensorSpec(shape, tf.uint8)),
            lambda: tf.zeros([0, *shape], tf.uint8))
        return pixels(image=images)

    return serve


def export_classifier(model, name, class_names, shape, train):
    """Export `saved_models/<name>/<version>/` with a raw-uint8 signature
    (`serving_default`, input `image`) and one of encoded files (`image_bytes`,
    a string batch: what TF Serving's REST API sends as {"b64": ...}), and
    ONNX/LiteRT files if asked; each checked in a fresh interpreter."""
    inputs = {"image": tf.TensorSpec((None, *shape), tf.uint8)}
    images = sample(train, 64)
    encoded = np.array([tf.io.encode_png(image).numpy() for image in images])
    return export.export_savedmodel(
        model, name, inputs, serving_function(model, class_names),
        root=train.export_dir, sample={"image": images},
        predictions={"probabilities": model(images, training=False).numpy()},
        formats=train.export_format,
        portable=lambda: export.float32_portable(
            model, inputs, lambda copy: serving_function(copy, class_names),
            {"image": images}, files={"labels.txt": class_names}),
        extra={"image_bytes": ({"image_bytes": tf.TensorSpec((None,), tf.string)},
                               bytes_serving_function(model, class_names, shape),
                               {"image_bytes": encoded})})
