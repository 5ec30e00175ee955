"""The Python API on a tiny synthetic bundle: outputs equal the command line's for the same
seed and settings, errors are exceptions, and the model stays usable after one."""

import json
import os
import pathlib
import struct
import subprocess
import time

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
    # An array at its own rate gives the same as the file, strided or not, and so does a
    # pathlib.Path.
    samples = read_float_wav(SPEECH)
    assert model.transcribe(samples, 24000, seed=5, max_steps=9) == want["text"]
    strided = np.repeat(samples, 2)[::2]
    assert not strided.flags["C_CONTIGUOUS"]
    assert model.transcribe(strided, 24000, seed=5, max_steps=9) == want["text"]
    assert model.transcribe(SPEECH, seed=5, max_steps=9) == want["text"]


def test_transcription_streams_in_pieces(model):
    pieces = list(model.transcribe_stream(str(SPEECH), seed=5, max_steps=9))
    assert len(pieces) > 1
    assert "".join(pieces) == model.transcribe(str(SPEECH), seed=5, max_steps=9)
    with pytest.raises(uniaudio.UniaudioError):
        list(model.transcribe_stream(np.zeros(0, dtype=np.float32), 16000))


def test_a_dropped_transcription_stream_frees_the_model(model):
    t = time.perf_counter()
    model.transcribe(str(SPEECH), seed=5, max_steps=2)
    quick = time.perf_counter() - t
    # A seed whose transcription runs long (it may meet end-of-text early).
    for seed in [5, 1, 2, 3]:
        t = time.perf_counter()
        model.transcribe(str(SPEECH), seed=seed, max_steps=1500)
        whole = time.perf_counter() - t
        if whole > 3 * quick:
            break
    assert whole > 3 * quick, f"no seed ran long: {whole:.3f} s against {quick:.3f} s for 2 steps"
    stream = model.transcribe_stream(str(SPEECH), seed=seed, max_steps=1500)
    next(stream)
    del stream
    t = time.perf_counter()
    model.transcribe(str(SPEECH), seed=5, max_steps=2)
    waited = time.perf_counter() - t
    assert waited < quick + (whole - quick) / 2, f"waited {waited:.3f} s; the whole run took {whole:.3f} s"


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
    with pytest.raises(uniaudio.ModelError, match="nowhere"):
        uniaudio.Model.load("/nowhere/bundle", backend="cpu")
    with pytest.raises(uniaudio.InvalidInputError, match="backend"):
        uniaudio.Model.load("/nowhere/bundle", backend="tpu")
    with pytest.raises(uniaudio.InvalidInputError, match="no samples"):
        model.transcribe(np.zeros(0, dtype=np.float32), 16000)
    for bad in [np.nan, np.inf]:
        with pytest.raises(uniaudio.InvalidInputError, match="non-finite sample"):
            model.transcribe(np.concatenate([np.zeros(8000, np.float32), np.full(10, bad, np.float32)]), 16000)
    with pytest.raises(uniaudio.AudioError):
        model.transcribe(__file__)
    with pytest.raises(uniaudio.InvalidInputError, match="sample_rate"):
        model.transcribe(np.zeros(100, dtype=np.float32))
    with pytest.raises(uniaudio.InvalidInputError, match="sample rate"):
        model.transcribe(np.zeros(100, dtype=np.float32), 999_999_937)
    assert model.backend.startswith("cpu")
    assert model.transcribe(str(SPEECH), max_steps=2) != ""


def test_missing_part_is_named(bundle):
    with pytest.raises(uniaudio.MissingPartError, match="tokenizer"):
        uniaudio.Model.load(str(bundle / "lm"), backend="cpu")
    assert issubclass(uniaudio.MissingPartError, uniaudio.UniaudioError)


REQUESTS = [
    {"frames": [{"text": 128000}, {"text": 40}, {"text": 41}, {"text": 128001}], "output_kind": "audio", "top_k": 20, "seed": 1, "max_steps": 12},
    {"frames": [{"text": 128000}, {"text": 40}, {"text": 41}, {"text": 128001}], "output_kind": "text", "top_k": 20, "seed": 2, "max_steps": 12},
    {"frames": [{"text": 128000}, {"audio": [1, 2, 3, 4, 5, 6, 7, 8]}], "output_kind": "audio", "seed": 3, "max_steps": 6, "cfg_scale": 1.5},
]


def test_generate_streams_and_batches_like_the_cli(model, bundle, tmp_path):
    reqs = tmp_path / "reqs.jsonl"
    reqs.write_text("\n".join(json.dumps(r) for r in REQUESTS) + "\n")
    want = [json.loads(line) for line in cli("generate", "--requests", reqs, "--model", bundle, "--backend", "cpu").splitlines()]
    assert len(want) == len(REQUESTS)
    assert model.generate_batch(REQUESTS, max_batch=2) == want
    for request, expected in zip(REQUESTS, want):
        events = list(model.generate(request))
        kind, done = events[-1]
        assert kind == "done" and done == expected
        frames = [v for k, v in events if k == "frame"]
        ids = [v for k, v in events if k == "text"]
        assert (frames, ids) == ((expected["frames"], []) if "frames" in expected else ([], expected["text_ids"]))
    # JSON text works as well as a dict.
    assert list(model.generate(json.dumps(REQUESTS[1])))[-1][1] == want[1]


def test_a_dropped_stream_ends_its_generation(model):
    # A long sampled run: up to 2040 steps fill the tiny model's 2048 positions. A seed
    # whose run meets end-of-text early (sampling may differ between instruction sets)
    # gives way to the next.
    for seed in [1, 2, 3, 4]:
        long = {"frames": REQUESTS[1]["frames"], "output_kind": "text", "top_k": 50, "temperature": 1.5, "seed": seed, "max_steps": 2040}
        t = time.perf_counter()
        events = list(model.generate(long))
        whole = time.perf_counter() - t
        if len(events) > 1000:
            break
    assert len(events) > 1000, "no seed gave a long run"
    # Dropped after its first event, it stops at its next step and frees the model: the
    # next request does not wait for the rest of it (the whole run took `whole`).
    stream = model.generate(long)
    next(stream)
    del stream
    t = time.perf_counter()
    assert list(model.generate(REQUESTS[1]))[-1][0] == "done"
    waited = time.perf_counter() - t
    assert waited < whole / 4, f"waited {waited:.3f} s; the whole run took {whole:.3f} s"


def test_bad_generation_requests(model):
    with pytest.raises(uniaudio.InvalidInputError, match="output_kind"):
        model.generate({"frames": [{"text": 1}]})
    with pytest.raises(uniaudio.InvalidInputError, match="max_batch"):
        model.generate_batch(REQUESTS, max_batch=0)
    for not_a_list in ["abc", b"abc", REQUESTS[0]]:
        with pytest.raises(uniaudio.InvalidInputError, match="iterable of requests"):
            model.generate_batch(not_a_list)
    out = model.generate_batch([{"frames": 5}, REQUESTS[1]])
    assert "frames" in out[0]["error"] and "text_ids" in out[1]
    with pytest.raises(uniaudio.InvalidInputError):
        list(model.generate({"frames": [{"text": 4294967295}], "output_kind": "text"}))


def test_run_takes_any_task(model, bundle, tmp_path):
    # Text to audio, as the CLI's `tta` gives it.
    out = tmp_path / "tta.wav"
    cli("tta", "--caption", "Rain on a roof.", "-o", out, "--model", bundle, "--backend", "cpu", "--seed", 3, "--max-steps", 80, "--steps", 2)
    seen = []
    got = model.run("tta", caption="Rain on a roof.", seed=3, max_steps=80, steps=2, on_progress=lambda *p: seen.append(p))
    assert got["task"] == "TTA" and got["sample_rate"] == 24000 and got["text"] is None
    np.testing.assert_array_equal(got["audio"], read_float_wav(out))
    # Progress: the latest of each moment, stages in order, ending with the whole decode.
    assert seen and seen[-1][0] == "decode" and seen[-1][1] == seen[-1][2] >= 2, seen
    order = [stage for stage, _, _ in seen]
    assert order == sorted(order, key=["generate", "decode"].index), seen

    # A callback that raises stops the run with its exception; the model goes on.
    def refuse(stage, done, total):
        raise ValueError(f"stop at {stage} {done}/{total}")
    with pytest.raises(ValueError, match="stop at"):
        model.run("tta", caption="Rain on a roof.", seed=3, max_steps=80, steps=2, on_progress=refuse)
    # TTS and ASR as their own calls give them.
    speech = model.run("TTS", text="Hello there.", seed=3, max_steps=80, steps=2)
    spoken = []
    np.testing.assert_array_equal(speech["audio"], model.tts("Hello there.", seed=3, max_steps=80, steps=2, on_progress=lambda *p: spoken.append(p))[0])
    assert spoken and spoken[-1][0] == "decode" and spoken[-1][1] == spoken[-1][2] >= 2, spoken
    heard = model.run("asr", str(SPEECH), seed=5, max_steps=9)
    listened = []
    assert heard["audio"] is None and heard["text"] == model.transcribe(str(SPEECH), seed=5, max_steps=9, on_progress=lambda *p: listened.append(p))
    # The last report is the last generated step (an early end of text stops short of the cap).
    assert listened and listened[-1] == ("generate", heard["steps"], 9), listened
    assert heard["seed"] == 5 and heard["stopped_by"] in ("eos", "max_steps")
    answer = model.run("audio_understanding", str(SPEECH), question="What is this?", max_steps=4)
    assert answer["text"] == model.ask(str(SPEECH), "What is this?", max_steps=4)
    # Refused, naming what is wrong.
    for call, want in [
        (lambda: model.run("asr"), "needs input audio"),
        (lambda: model.run("tts", str(SPEECH), text="Hi."), "takes no input audio"),
        (lambda: model.run("tts", text="Hi.", caption="calm"), "does not use `caption`"),
        (lambda: model.run("karaoke"), "unknown task"),
        (lambda: model.run("tta", caption="x", steps=0), "`steps` must be 1..=1000"),
        (lambda: model.run("tta", caption="x", max_steps=0), "`max_steps` must be at least 1"),
        (lambda: model.run("tta", caption="x", sample_rate=16000), "sample_rate"),
    ]:
        with pytest.raises(uniaudio.InvalidInputError, match=want):
            call()


def test_ctrl_c_stops_a_task_and_the_model_goes_on(model):
    import _thread
    import signal
    import threading

    def interrupted(call):
        """Runs `call` warm and whole, then again with Ctrl-C a quarter of the way in."""
        want = call()
        t = time.perf_counter()
        call()
        whole = time.perf_counter() - t
        assert whole > 0.5, f"the run took only {whole:.3f} s"
        # Python's own handler is installed for the run: a process started in the
        # background inherits SIGINT ignored, and then interrupt_main does nothing.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        timer = threading.Timer(whole / 4, _thread.interrupt_main)
        t = time.perf_counter()
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                call()
        finally:
            # A run that ended before the timer must not leave it to interrupt what follows.
            timer.cancel()
            signal.signal(signal.SIGINT, previous)
        stopped = time.perf_counter() - t
        assert stopped < whole * 3 / 4, f"stopped after {stopped:.3f} s; the whole run took {whole:.3f} s"
        return want

    # TTS: the codec's 100 Euler steps after the LM. The model is free afterwards and gives
    # the same samples again.
    want, _ = interrupted(lambda: model.tts("Hello there.", seed=3, max_steps=80, steps=100))
    samples, _ = model.tts("Hello there.", seed=3, max_steps=80, steps=100)
    np.testing.assert_array_equal(samples, want)
    # The codec decoder alone.
    _, reconstruction = model.encode(str(SPEECH))
    want, _ = interrupted(lambda: model.decode(reconstruction, steps=100, seed=1))
    np.testing.assert_array_equal(model.decode(reconstruction, steps=100, seed=1)[0], want)
    # A batch of generations: stopped between batched steps, the same outputs afterwards.
    long_text = {"frames": REQUESTS[1]["frames"], "output_kind": "text", "top_k": 20, "max_steps": 200, "cfg_scale": 1.5}
    batch = [dict(long_text, seed=s) for s in range(6)]
    want = interrupted(lambda: model.generate_batch(batch, max_batch=12))
    assert model.generate_batch(batch, max_batch=12) == want
