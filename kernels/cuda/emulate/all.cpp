// Every kernel of kernels/cuda/, compiled for the CPU emulator (emu.h). The emulator's
// test driver (check.cpp) and the `uniaudio-cuda-emu` crate build on this.
#ifndef UNIAUDIO_EMULATE
#define UNIAUDIO_EMULATE
#endif
#include "emu.h"
#include "../common.cuh"
#include "emu_f16.h"

#include "../attention.cu"
#include "../attention_tc.cu"
#include "../conv.cu"
#include "../elementwise.cu"
#include "../embed.cu"
#include "../gemm_tc.cu"
#include "../group_norm.cu"
#include "../matmul.cu"
#include "../rel_pos_attention.cu"
#include "../rms_norm.cu"
#include "../rvq_encode.cu"
#include "../sample.cu"
