/* tts BUNDLE_DIR OUT.wav [TEXT]: speech from text through the uniaudio C API. */
#include <stdio.h>

#include "uniaudio.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s BUNDLE_DIR OUT.wav [TEXT]\n", argv[0]);
        return 2;
    }
    const char *text = argc > 3 ? argv[3] : "Hello from C.";
    UniaudioModel *model = NULL;
    if (uniaudio_model_load(argv[1], "cpu", &model) != UNIAUDIO_STATUS_OK) {
        fprintf(stderr, "load: %s\n", uniaudio_last_error());
        return 1;
    }
    UniaudioOptions options = {0};
    options.seed = 3;
    options.max_steps = 80;
    options.codec_steps = 2;
    UniaudioAudio audio = {0};
    int rc = 0;
    if (uniaudio_tts(model, text, &options, &audio) != UNIAUDIO_STATUS_OK) {
        fprintf(stderr, "tts: %s\n", uniaudio_last_error());
        rc = 1;
    } else if (uniaudio_audio_write_wav(&audio, argv[2]) != UNIAUDIO_STATUS_OK) {
        fprintf(stderr, "write: %s\n", uniaudio_last_error());
        rc = 1;
    } else {
        printf("%zu samples at %u Hz -> %s\n", audio.len, audio.sample_rate, argv[2]);
    }
    uniaudio_audio_free(&audio);
    uniaudio_model_free(model);
    return rc;
}
