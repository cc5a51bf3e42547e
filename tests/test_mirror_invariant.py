"""`--mirror-invariant`: a photo and its left-right mirror get one embedding from the exported SavedModel,
while reconstruction (and so the error) still uses each image's own code; non-image input is refused."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import train_tiny
from image_data import encode, pattern, write_image_dataset

from ae_tf.errors import InvalidInput
from ae_tf.model.train import make_train_config, train

SETTINGS = dict(family="conv", image_size="16", channels=3, filters="8", epochs=1, batch_size=32, min_steps=0,
                read_rows=64)


@pytest.fixture(scope="module")
def mirrored_model(tmp_path_factory):
    data = write_image_dataset(tmp_path_factory.mktemp("mirror-images"), rows=96)
    out = str(tmp_path_factory.mktemp("mirror-models") / "conv")
    result = train(make_train_config(data, "image", out, 6, mirror_invariant=True, **SETTINGS))
    return out, result


def test_a_mirrored_photo_gets_the_same_embedding(mirrored_model):
    model_dir, result = mirrored_model
    assert result.metadata["model"]["mirror_invariant"] is True
    rng = np.random.default_rng(4)
    photos = [pattern(i, 16, 16, rng) for i in range(4)]
    originals = [encode(p, "PNG") for p in photos]  # lossless, so the mirror is exactly the flipped pixels
    mirrors = [encode(np.ascontiguousarray(p[:, ::-1]), "PNG") for p in photos]
    served = tf.saved_model.load(model_dir).signatures["encode_and_score"]
    a = served(features=tf.constant(originals))
    b = served(features=tf.constant(mirrors))
    np.testing.assert_allclose(a["embedding"].numpy(), b["embedding"].numpy(), atol=1e-5)

    # the network itself is not symmetric: without the pooling the two codes differ
    images = tf.image.resize(tf.constant(np.stack(photos), tf.float32) / 255.0, (16, 16), antialias=True)
    own = result.model.embed(images).numpy()
    flipped = result.model.embed(tf.reverse(images, axis=[2])).numpy()
    assert np.abs(own - flipped).max() > 1e-3
    # the error is each image's own reconstruction: recomputing it from the image's own code agrees
    rebuilt = result.model.decoder(own, training=False).numpy()
    own_error = ((images.numpy() - rebuilt) ** 2).reshape(len(photos), -1).mean(axis=1)
    np.testing.assert_allclose(a["reconstruction_error"].numpy(), own_error, rtol=1e-4, atol=1e-6)


def test_mirror_invariance_needs_an_image_column(vector_data, tmp_path):
    with pytest.raises(InvalidInput, match="--mirror-invariant needs an image feature column"):
        train_tiny(f"{vector_data}/*.parquet", "vec", str(tmp_path / "m"), mirror_invariant=True)
