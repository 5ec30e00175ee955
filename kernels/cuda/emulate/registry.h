// The emulator's launch entry point for Rust (`uniaudio-cuda-emu`): kernels by name, with
// their arguments as an array of pointers to the values, as cuLaunchKernel takes them.
#pragma once
#include <cstring>
#include <mutex>
#include <type_traits>
#include <utility>

namespace emu {
struct Entry {
    const char* name;
    void (*call)(void**);
};
extern const Entry entries[];
extern const unsigned entry_count;

template <typename... P, std::size_t... I>
void call_with(void (*f)(P...), void** a, std::index_sequence<I...>) {
    f(*static_cast<std::remove_reference_t<P>*>(a[I])...);
}

template <typename... P>
void call(void (*f)(P...), void** a) {
    call_with(f, a, std::index_sequence_for<P...>{});
}
}  // namespace emu

// 0: ran; 1: no such kernel; 2: block larger than the emulator supports.
extern "C" int emu_launch(const char* name, unsigned grid, unsigned block_x, unsigned block_y, void** args) {
    static std::mutex one_at_a_time;
    std::lock_guard<std::mutex> lock(one_at_a_time);
    for (unsigned i = 0; i < emu::entry_count; i++) {
        if (std::strcmp(emu::entries[i].name, name) == 0) {
            auto call = emu::entries[i].call;
            return emu::launch(grid, dim3{block_x, block_y, 1}, [&] { call(args); }) ? 0 : 2;
        }
    }
    return 1;
}
