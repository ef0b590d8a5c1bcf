"""Audio features and audio recall (the talk's section 2.3; notebooks 05 and 06).

* :mod:`.decode`: decoding wav/ogg/opus/mp3 with per-file errors and warnings.
* :mod:`.features`: 4 s segments x 14 attributes (musicnn tags, DSP descriptors, two heuristics) x
  6 statistics = the 84-dim embedding.
* :mod:`.corpus`: embedding files with a content-hash cache and an issue report.
* :mod:`.recall`: faiss item-to-item recall and user audio profiles.
* :mod:`.simulated`: audio of the simulated world and the claim-C4 analyses.
* :mod:`.sources`: the labelled validation audio, real (``SHARED_DIR/audio``) or rendered by the
  simulated world when that folder is absent (``audio_source="auto"``).
* :mod:`.validation`: vocal AUC against sung lines or vocal sections, the port check, bad-file
  fixtures, figures.
* :mod:`musicrecall.models.tfbundle` (beside the model that reads it): a TensorFlow V2 checkpoint reader without TensorFlow.
"""

from .corpus import Corpus, embed_files, embed_folder, list_audio, scan_audio
from .decode import AudioDecodeError, AudioIssue, load_audio
from .features import (
    ATTRIBUTE_SOURCES,
    ATTRIBUTES,
    STATISTICS,
    AudioConfig,
    EmbeddingScaler,
    embedding_names,
    segment_attributes,
    segment_statistics,
)
from .recall import AudioIndex
from .sources import AudioSet, load_audio_set, resolve_source

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_SOURCES",
    "STATISTICS",
    "AudioConfig",
    "AudioDecodeError",
    "AudioIndex",
    "AudioIssue",
    "AudioSet",
    "Corpus",
    "EmbeddingScaler",
    "embed_files",
    "embed_folder",
    "embedding_names",
    "list_audio",
    "load_audio",
    "load_audio_set",
    "resolve_source",
    "scan_audio",
    "segment_attributes",
    "segment_statistics",
]
