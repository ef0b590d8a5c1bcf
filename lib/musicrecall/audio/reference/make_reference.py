"""Regenerate ``musicnn_mtt_reference.npz``: outputs of the reference musicnn 0.1.0 on TensorFlow.

Never imported by the package. Run it in a scratch environment, never in the project's venv::

    python3.11 -m venv /tmp/tfref
    /tmp/tfref/bin/pip install tensorflow-cpu==2.15.1 librosa==0.10.2 "numpy<2" soundfile
    /tmp/tfref/bin/pip install --no-deps musicnn==0.1.0
    /tmp/tfref/bin/python make_reference.py out.npz ../../../../../shared/audio/excerpts/wesnoth_battle.ogg \
        .../excerpts/muldjord_chaos_god.ogg .../songs/Fantasma_-_Los_Rombos.mp3 \
        .../songs/de_bonne_humeur_-_Le_Nez_Tordu.mp3

Three 3 s patches (first, middle, last) per file: the float16 log-mel input of ``batch_data``, the 50
tag probabilities and the 200-dim penultimate layer of MTT_musicnn.
"""

import os
import sys

import librosa
import numpy as np
import tensorflow as tf
from musicnn import configuration as config
from musicnn import models
from musicnn.extractor import batch_data


def main(out: str, files: list[str], n_frames: int = 187) -> None:
    import musicnn

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    with tf.name_scope("model"):
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, config.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        y, *_, penultimate = models.define_model(x, is_training, "MTT_musicnn", 50)
        probs = tf.nn.sigmoid(y)
    sess = tf.compat.v1.Session()
    tf.compat.v1.train.Saver().restore(sess, os.path.dirname(musicnn.__file__) + "/MTT_musicnn/")
    batches, names = [], []
    for f in files:
        batch, _ = batch_data(f, n_frames, n_frames)
        batches.append(batch[np.linspace(0, len(batch) - 1, 3).astype(int)])
        names += [os.path.basename(f)] * 3
    mel = np.concatenate(batches).astype(np.float32)
    tags, pen = sess.run([probs, penultimate], feed_dict={x: mel, is_training: False})
    np.savez_compressed(out, mel=mel.astype(np.float16), tags=tags.astype(np.float32),
                        penultimate=pen.astype(np.float32), names=np.array(names),
                        versions=np.array([tf.__version__, librosa.__version__, np.__version__]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
