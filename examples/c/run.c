/* run BUNDLE_DIR REQUEST_JSON [INPUT_AUDIO] [OUT.wav]: any task through the uniaudio C API.
 *
 * Text is printed as it is generated, progress goes to stderr, and Ctrl-C stops the run
 * at its next step (the abort callback reads a flag the signal handler sets). Examples:
 *   run models/uniaudio2 '{"task": "ASR"}' talk.wav
 *   run models/uniaudio2 '{"task": "TTA", "caption": "Rain on a roof."}' "" rain.wav */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "uniaudio.h"

static volatile sig_atomic_t interrupted = 0;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static int32_t should_abort(void *user) {
    (void)user;
    return interrupted;
}

static void on_progress(void *user, UniaudioStage stage, size_t done, size_t total) {
    (void)user;
    static const char *names[] = {"encoding", "generating", "decoding"};
    const char *name = (size_t)stage < sizeof names / sizeof names[0] ? names[stage] : "working";
    fprintf(stderr, "\r%s %zu/%zu   ", name, done, total);
    if (done == total) fputc('\n', stderr);
}

static void on_text(void *user, const char *piece) {
    (void)user;
    fputs(piece, stdout);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s BUNDLE_DIR REQUEST_JSON [INPUT_AUDIO] [OUT.wav]\n", argv[0]);
        return 2;
    }
    const char *input_path = argc > 3 && argv[3][0] ? argv[3] : NULL;
    const char *out_path = argc > 4 ? argv[4] : NULL;
    UniaudioModel *model = NULL;
    if (uniaudio_model_load(argv[1], "cpu", &model) != UNIAUDIO_STATUS_OK) {
        fprintf(stderr, "load: %s\n", uniaudio_last_error());
        return 1;
    }
    /* sigaction, not signal: the handler stays installed for a second Ctrl-C. */
    struct sigaction on_int;
    memset(&on_int, 0, sizeof on_int);
    on_int.sa_handler = on_sigint;
    on_int.sa_flags = SA_RESTART;
    sigemptyset(&on_int.sa_mask);
    sigaction(SIGINT, &on_int, NULL);
    uniaudio_model_set_abort(model, should_abort, NULL);
    UniaudioAudio input = {0}, output = {0};
    char *json = NULL;
    int rc = 0;
    if (input_path && uniaudio_audio_read(input_path, &input) != UNIAUDIO_STATUS_OK) {
        fprintf(stderr, "read: %s\n", uniaudio_last_error());
        rc = 1;
    } else {
        UniaudioRunEvents events = {NULL, on_progress, on_text};
        UniaudioStatus status = uniaudio_run(model, argv[2], input_path ? &input : NULL, &events, &output, &json);
        if (status == UNIAUDIO_STATUS_CANCELLED) {
            fprintf(stderr, "\nstopped: %s\n", uniaudio_last_error());
            rc = 130;
        } else if (status != UNIAUDIO_STATUS_OK) {
            fprintf(stderr, "run: %s\n", uniaudio_last_error());
            rc = 1;
        } else {
            printf("\n%s\n", json);
            if (output.len > 0 && out_path && uniaudio_audio_write_wav(&output, out_path) != UNIAUDIO_STATUS_OK) {
                fprintf(stderr, "write: %s\n", uniaudio_last_error());
                rc = 1;
            }
        }
    }
    uniaudio_string_free(json);
    uniaudio_audio_free(&input);
    uniaudio_audio_free(&output);
    uniaudio_model_free(model);
    return rc;
}
