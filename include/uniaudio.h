/* The uniaudio C API. Generated from capi/src/lib.rs by cbindgen; do not edit.
 *
 * Ownership: a UniaudioModel* from uniaudio_model_load is released with
 * uniaudio_model_free; a UniaudioAudio filled by the library with uniaudio_audio_free;
 * UniaudioTokens filled by the library with uniaudio_tokens_free; a char* returned by the
 * library with uniaudio_string_free. Strings passed in are
 * borrowed for the call only. Every pointer argument is checked for null
 * (UNIAUDIO_STATUS_NULL_ARGUMENT). On any status but UNIAUDIO_STATUS_OK,
 * uniaudio_last_error() says why (per thread). A model runs one call at a time: a call
 * on a model while another runs on it (from another thread, or from an event callback)
 * returns UNIAUDIO_STATUS_INVALID_INPUT. Do not modify returned strings or the fields of
 * a returned UniaudioAudio or UniaudioTokens before freeing them.
 * Link with -luniaudio_c (target/release/libuniaudio_c.so or .a). */

#ifndef UNIAUDIO_H
#define UNIAUDIO_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// The result of every fallible call. On any status but `UNIAUDIO_STATUS_OK`,
// `uniaudio_last_error` says why and the outputs are untouched.
typedef enum UniaudioStatus {
  // Success; outputs are filled.
  UNIAUDIO_STATUS_OK = 0,
  // A fault inside the library (worth a bug report).
  UNIAUDIO_STATUS_ERROR = 1,
  // A required pointer argument was null.
  UNIAUDIO_STATUS_NULL_ARGUMENT = 2,
  // A panic was caught at the boundary; the model may be used again.
  UNIAUDIO_STATUS_PANIC = 3,
  // An argument or request was refused (a bad value, a missing input, too long).
  UNIAUDIO_STATUS_INVALID_INPUT = 4,
  // The model lacks a part the call needs (the message names it).
  UNIAUDIO_STATUS_MISSING_PART = 5,
  // A model file is missing, unreadable or malformed.
  UNIAUDIO_STATUS_MODEL = 6,
  // An audio file could not be read or decoded.
  UNIAUDIO_STATUS_AUDIO = 7,
  // The backend could not be opened or failed.
  UNIAUDIO_STATUS_BACKEND = 8,
  // A file could not be read or written.
  UNIAUDIO_STATUS_IO = 9,
  // The caller's event callback or abort callback asked to stop.
  UNIAUDIO_STATUS_CANCELLED = 10,
} UniaudioStatus;

// What a generation event carries.
typedef enum UniaudioEventKind {
  // A sampled audio frame: `codes` holds its 8 codes.
  UNIAUDIO_EVENT_KIND_FRAME = 0,
  // A sampled text id: `text_id`.
  UNIAUDIO_EVENT_KIND_TEXT = 1,
} UniaudioEventKind;

// A stage of a task run.
typedef enum UniaudioStage {
  // The codec encoder on the input audio (units: chunks).
  UNIAUDIO_STAGE_ENCODE = 0,
  // The LM (units: generated steps; `total` is the step cap).
  UNIAUDIO_STAGE_GENERATE = 1,
  // The codec decoder on the generated tokens (units: Euler steps over windows).
  UNIAUDIO_STAGE_DECODE = 2,
} UniaudioStage;

// A loaded model (opaque).
typedef struct UniaudioModel UniaudioModel;

// Asked by a running call, on the thread that made it, whether to stop: return 0 to go
// on, anything else to stop (the call then returns `UNIAUDIO_STATUS_CANCELLED`). It is
// asked at the start of a call, before each batch of encoder chunks and each generated
// step, and after each Euler step of the codec decoder, so keep it cheap (reading an atomic flag that
// another thread sets, or comparing a deadline). It must not call the library with its
// model (refused, as from an event callback).
typedef int32_t (*UniaudioAbortFn)(void *user);

// Sampling options; a zero field takes the task's default.
typedef struct UniaudioOptions {
  // Seed of the sampler and of the codec's noise (0: 888, the reference's).
  uint64_t seed;
  // Most LM steps (0: the task's cap, reduced to what the context holds).
  uint32_t max_steps;
  // Codec Euler steps for audio output (0: 50).
  uint32_t codec_steps;
  // Keep the K most likely ids (0: the task's).
  uint32_t top_k;
  // Sampling temperature (0: the task's).
  float temperature;
} UniaudioOptions;

// Mono audio owned by the library: release with `uniaudio_audio_free`.
typedef struct UniaudioAudio {
  // `len` samples in [-1, 1].
  float *samples;
  size_t len;
  // Samples per second.
  uint32_t sample_rate;
} UniaudioAudio;

// Codec tokens owned by the library, frames of 8 codes stored one after another:
// `reasoning` holds `8 * reasoning_len` codes (5 frames a second), `reconstruction`
// `8 * reconstruction_len` (12.5 frames a second). Release with `uniaudio_tokens_free`.
typedef struct UniaudioTokens {
  uint32_t *reasoning;
  size_t reasoning_len;
  uint32_t *reconstruction;
  size_t reconstruction_len;
} UniaudioTokens;

// One event of a streamed generation (borrowed for the callback's duration).
typedef struct UniaudioEvent {
  enum UniaudioEventKind kind;
  // The frame's codes (`kind == UNIAUDIO_EVENT_KIND_FRAME`), else zeros.
  uint32_t codes[8];
  // The text id (`kind == UNIAUDIO_EVENT_KIND_TEXT`), else 0.
  uint32_t text_id;
} UniaudioEvent;

// Called for every event; return 0 to go on, anything else to stop the generation
// (the call then returns `UNIAUDIO_STATUS_CANCELLED`). Calls on the same model from the
// callback are refused (`UNIAUDIO_STATUS_INVALID_INPUT`; `uniaudio_model_free` leaves it).
typedef int32_t (*UniaudioEventFn)(void *user, const struct UniaudioEvent *event);

// Called as a task run progresses, on the thread that made the call: `done` of `total`
// units of `stage`.
typedef void (*UniaudioProgressFn)(void *user, enum UniaudioStage stage, size_t done, size_t total);

// Called with each newly final piece of a text task's text as it is generated, on the
// thread that made the call: `piece` is NUL-terminated UTF-8, borrowed for the callback's
// duration (a NUL in the text is passed as a space). The pieces joined are the output's
// `text`, but for a long recording transcribed in windows they may differ from it in the
// spaces between windows.
typedef void (*UniaudioTextFn)(void *user, const char *piece);

// What a task run reports as it goes; a null callback is not called.
typedef struct UniaudioRunEvents {
  // Passed to every callback.
  void *user;
  // Stage progress.
  UniaudioProgressFn on_progress;
  // Text as it is generated (text tasks).
  UniaudioTextFn on_text;
} UniaudioRunEvents;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// The message of the last failed call on this thread ("" if none). Valid until the next
// call on this thread; do not free it.
const char *uniaudio_last_error(void);

// Loads a bundle (a directory with uniaudio.json) on `backend` ("auto", "cpu", "wgpu",
// "cuda"; null means "auto") into `*out`.
//
// # Safety
// `path` and `backend` (if not null) are NUL-terminated strings; `out` is writable.
enum UniaudioStatus uniaudio_model_load(const char *path,
                                        const char *backend,
                                        struct UniaudioModel **out);

// Sets the abort callback that every later call on `model` asks whether to stop (see
// `UniaudioAbortFn`); a null `abort` removes it. Refused with
// `UNIAUDIO_STATUS_INVALID_INPUT` while a call runs on the model.
//
// # Safety
// `model` is a live model; `abort`, if not null, is callable with `user` until it is
// replaced or the model is freed.
enum UniaudioStatus uniaudio_model_set_abort(struct UniaudioModel *model,
                                             UniaudioAbortFn abort,
                                             void *user);

// Releases a model (null is ignored). A model with a call running on it (freed from an
// event callback) is not released: `uniaudio_last_error` says so, and the model stays
// valid until it is freed after the call returns.
//
// # Safety
// `model` came from `uniaudio_model_load` and is not used afterwards.
void uniaudio_model_free(struct UniaudioModel *model);

// Releases a string returned by the library (null is ignored).
//
// # Safety
// `s` came from this library and is not used afterwards.
void uniaudio_string_free(char *s);

// Text to speech into `*out` (24 kHz). `options` may be null.
//
// # Safety
// `model` is a live model; `text` a NUL-terminated string; `out` writable.
enum UniaudioStatus uniaudio_tts(struct UniaudioModel *model,
                                 const char *text,
                                 const struct UniaudioOptions *options,
                                 struct UniaudioAudio *out);

// Transcribes `len` mono samples at `sample_rate` into `*out_text` (free it with
// `uniaudio_string_free`).
//
// # Safety
// `model` is a live model; `samples` points to `len` floats; `out_text` is writable.
enum UniaudioStatus uniaudio_transcribe(struct UniaudioModel *model,
                                        const float *samples,
                                        size_t len,
                                        uint32_t sample_rate,
                                        char **out_text);

// Reads an audio file (WAV, FLAC, MP3, Ogg/Vorbis) as mono into `*out`.
//
// # Safety
// `path` is a NUL-terminated string; `out` is writable.
enum UniaudioStatus uniaudio_audio_read(const char *path, struct UniaudioAudio *out);

// Writes audio as a 32-bit float WAV file (through a temporary file, renamed when done).
//
// # Safety
// `audio` points to a filled `UniaudioAudio`; `path` is a NUL-terminated string.
enum UniaudioStatus uniaudio_audio_write_wav(const struct UniaudioAudio *audio, const char *path);

// Releases audio filled by the library and zeroes the struct (null is ignored).
//
// # Safety
// `audio` was filled by this library and its samples are not used afterwards.
void uniaudio_audio_free(struct UniaudioAudio *audio);

// Encodes `input` (any sample rate) into `*out` (the model's codec encoder; asks the abort
// callback before each batch of chunks).
//
// # Safety
// `model` is a live model; `input` a filled `UniaudioAudio`; `out` writable.
enum UniaudioStatus uniaudio_encode(struct UniaudioModel *model,
                                    const struct UniaudioAudio *input,
                                    struct UniaudioTokens *out);

// Decodes `frames` reconstruction frames (`8 * frames` codes, one frame after another, as
// `uniaudio_encode` gives them) into 24 kHz audio in `*out`, with
// `steps` Euler steps (1 to 1000; the reference scripts use 10) from noise seeded by
// `seed`; asks the abort callback after each Euler step.
//
// # Safety
// `model` is a live model; `reconstruction` points to `8 * frames` codes; `out` writable.
enum UniaudioStatus uniaudio_decode(struct UniaudioModel *model,
                                    const uint32_t *reconstruction,
                                    size_t frames,
                                    uint32_t steps,
                                    uint64_t seed,
                                    struct UniaudioAudio *out);

// Releases tokens filled by the library and zeroes the struct (null is ignored).
//
// # Safety
// `tokens` was filled by `uniaudio_encode` and its frames are not used afterwards.
void uniaudio_tokens_free(struct UniaudioTokens *tokens);

// Runs one request (a JSON object: `{"frames": [...], "output_kind": "audio"|"text",
// "top_k", "temperature", "seed", "max_steps", "cfg_scale"}`; missing sampler fields take
// `uniaudio generate`'s defaults), calling `on_event` (may be null) with `user` for every
// sampled frame or text id as it is generated, and stores the output object (the JSON
// `uniaudio generate` prints) in `*out_json` (free it with `uniaudio_string_free`).
//
// # Safety
// `model` is a live model; `request_json` a NUL-terminated string; `out_json` writable;
// `on_event`, if not null, is callable with `user` for the call's duration.
enum UniaudioStatus uniaudio_generate(struct UniaudioModel *model,
                                      const char *request_json,
                                      UniaudioEventFn on_event,
                                      void *user,
                                      char **out_json);

// Runs many requests together through the continuously batched engine (up to
// `max_batch` rows per step; 0 means 8). `requests_jsonl` holds one request object per
// line (blank lines are skipped); `*out_jsonl` receives one output object per request, in
// order, each what the request gives alone, or `{"error": "..."}` for one that was
// refused or failed (free it with `uniaudio_string_free`).
//
// # Safety
// `model` is a live model; `requests_jsonl` a NUL-terminated string; `out_jsonl` writable.
enum UniaudioStatus uniaudio_generate_batch(struct UniaudioModel *model,
                                            const char *requests_jsonl,
                                            size_t max_batch,
                                            char **out_jsonl);

// Runs any task. `request_json` is `{"task", "text", "caption", "lyrics", "question",
// "instruction", "seed", "max_steps", "top_k", "temperature", "cfg_scale", "codec_steps"}`:
// `task` names one (`TTS`, `TTA`, `TTM`, `LTS` or `song`, `InstructTTS`, `speech_s2s`,
// `ASR`, `audio_caption`, `music_caption`, `lyric_recognition`, `speech_s2t`,
// `audio_understanding`, `Yue_TTS`, `Yue_ASR`; any case), the text fields it reads are
// required and others refused, unknown fields are refused, and missing sampler fields take
// the task's defaults (`codec_steps` 50, at most 1000). `input` (any sample rate) is
// required by the tasks that read audio and must be null for the others. A task that
// produces audio writes it to `*out_audio` (required for those tasks; free it with
// `uniaudio_audio_free`); a text task given an `out_audio` leaves it empty (null samples,
// length 0). `*out_json` receives the run's output object (`text` for text tasks,
// `stopped_by`, `steps` (LM steps generated), `top_k`, `temperature`, `seed` and
// `max_steps` as used, `timings`; free it with `uniaudio_string_free`). `events` (may be
// null) receives progress and streamed text as the run goes.
//
// # Safety
// `model` is a live model; `request_json` a NUL-terminated string; `input`, if not null,
// a filled `UniaudioAudio` whose samples stay valid for the call; `out_audio`, if not
// null, and `out_json` writable; `events`, if not null, points to callbacks callable with
// its `user` for the call's duration.
enum UniaudioStatus uniaudio_run(struct UniaudioModel *model,
                                 const char *request_json,
                                 const struct UniaudioAudio *input,
                                 const struct UniaudioRunEvents *events,
                                 struct UniaudioAudio *out_audio,
                                 char **out_json);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* UNIAUDIO_H */
