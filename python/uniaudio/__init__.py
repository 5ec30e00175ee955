"""UniAudio 2.0 inference: load a model bundle once, then run any task.

>>> import uniaudio
>>> model = uniaudio.Model.load("models/uniaudio2", backend="cpu")  # doctest: +SKIP
>>> samples, rate = model.tts("Hello there.", seed=7)                # doctest: +SKIP
>>> model.transcribe("talk.wav")                                     # doctest: +SKIP
"""

from ._uniaudio import (
    AudioError,
    BackendError,
    Events,
    InvalidInputError,
    MissingPartError,
    Model,
    ModelError,
    UniaudioError,
)

__all__ = [
    "AudioError",
    "BackendError",
    "Events",
    "InvalidInputError",
    "MissingPartError",
    "Model",
    "ModelError",
    "UniaudioError",
]
