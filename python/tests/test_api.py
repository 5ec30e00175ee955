"""The Python API on a tiny synthetic bundle: outputs equal the command line's for the same
seed and settings, errors are exceptions, and the model stays usable after one."""

import json
import os
import pathlib
import struct
import subprocess

import numpy as np
import pytest

import uniaudio

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = os.environ.get("UNIAUDIO_BIN", str(ROOT / "target" / "release" / "uniaudio"))
SPEECH = ROOT / "codec" / "tests" / "fixtures" / "encode" / "a_24k_f32_3s2.wav"


def cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "UNIAUDIO_MODEL"}
    out = subprocess.run([CLI, *map(str, args)], capture_output=True, env=env, check=False)
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout


def read_float_wav(path):
    """Samples of a mono 32-bit float WAV (the format the command line writes)."""
    data = pathlib.Path(path).read_bytes()
    pos = 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if tag == b"data":
            return np.frombuffer(data[pos + 8:pos + 8 + size], dtype="<f4")
        pos += 8 + size + (size & 1)
    raise ValueError("no data chunk")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = tmp_path_factory.mktemp("bundle") / "tiny"
    cli("synth", "--bundle", path, "--preset", "tiny")
    return path


@pytest.fixture(scope="module")
def model(bundle):
    return uniaudio.Model.load(str(bundle), backend="cpu")


def test_transcribe_equals_the_cli(model, bundle):
    want = json.loads(cli("asr", SPEECH, "--model", bundle, "--backend", "cpu", "--json", "--seed", 5, "--max-steps", 9))
    assert model.transcribe(str(SPEECH), seed=5, max_steps=9) == want["text"]
    # An array at its own rate gives the same as the file.
    samples = read_float_wav(SPEECH)
    assert model.transcribe(samples, 24000, seed=5, max_steps=9) == want["text"]


def test_transcription_streams_in_pieces(model):
    pieces = list(model.transcribe_stream(str(SPEECH), seed=5, max_steps=9))
    assert len(pieces) > 1
    assert "".join(pieces) == model.transcribe(str(SPEECH), seed=5, max_steps=9)
    with pytest.raises(uniaudio.UniaudioError):
        list(model.transcribe_stream(np.zeros(0, dtype=np.float32), 16000))


def test_tts_equals_the_cli(model, bundle, tmp_path):
    out = tmp_path / "tts.wav"
    cli("tts", "--text", "Hello there.", "-o", out, "--model", bundle, "--backend", "cpu", "--seed", 3, "--max-steps", 80, "--steps", 2)
    samples, rate = model.tts("Hello there.", seed=3, max_steps=80, steps=2)
    assert rate == 24000
    assert samples.dtype == np.float32
    np.testing.assert_array_equal(samples, read_float_wav(out))


def test_encode_and_decode(model):
    reasoning, reconstruction = model.encode(str(SPEECH))
    assert len(reasoning) == 17 and len(reconstruction) == 41
    assert all(len(f) == 8 for f in reconstruction)
    samples, rate = model.decode(reconstruction, steps=2, seed=1)
    assert rate == 24000 and len(samples) == int(41 / 12.5 * 24000)


def test_errors_are_exceptions(model):
    with pytest.raises(uniaudio.UniaudioError, match="nowhere"):
        uniaudio.Model.load("/nowhere/bundle", backend="cpu")
    with pytest.raises(uniaudio.UniaudioError, match="backend"):
        uniaudio.Model.load("/nowhere/bundle", backend="tpu")
    with pytest.raises(uniaudio.UniaudioError):
        model.transcribe(np.zeros(0, dtype=np.float32), 16000)
    with pytest.raises(uniaudio.UniaudioError, match="sample_rate"):
        model.transcribe(np.zeros(100, dtype=np.float32))
    assert model.backend.startswith("cpu")
    assert model.transcribe(str(SPEECH), max_steps=2) != ""
