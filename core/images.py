"""What the image recipes share: the dataset's image facts and a raw-pixel export.

- `facts(name)`: (image shape, class names) of an image dataset, refusing
  anything that is not uint8 images.
- `export_classifier`: a SavedModel whose signature takes raw uint8 images,
  `image` `[batch, height, width, channels]`, and answers `probabilities`,
  `class_id` and `class_name` (ONNX and LiteRT files beside it on request,
  with `labels.txt`), checked in a fresh interpreter.
"""

import tensorflow as tf

from core import data, export
from core.config import ConfigError


def facts(train):
    """(image shape, class names) of `train.dataset`, a TFDS image classification
    dataset."""
    name = train.dataset
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


def export_classifier(model, name, class_names, shape, train):
    """Export `saved_models/<name>/<version>/` with a raw-uint8 signature (and
    ONNX/LiteRT if asked), checked in a fresh interpreter."""
    inputs = {"image": tf.TensorSpec((None, *shape), tf.uint8)}
    images = sample(train, 64)
    return export.export_savedmodel(
        model, name, inputs, serving_function(model, class_names),
        root=train.export_dir, sample={"image": images},
        predictions={"probabilities": model(images, training=False).numpy()},
        formats=train.export_format,
        portable=lambda: export.float32_portable(
            model, inputs, lambda copy: serving_function(copy, class_names),
            {"image": images}, files={"labels.txt": class_names}))
