// The threads that share a compiled decode step's loops (int_matmul.cpp, decoder.cpp).
//
// Why not at::parallel_for: PyTorch's CPU builds run it on libgomp, which spins only about a hundred times before
// sleeping on a futex whenever it manages more threads than there are CPUs. It does as soon as a thread other than
// the process's first one runs a parallel loop, as the engine's scheduler thread always does, so each of a decode
// step's dozens of loops then paid a sleep and a wake-up per thread, as long as the step's arithmetic. These workers
// spin between loops for a while (a decode step's Python work between steps is shorter) and sleep only after.
#pragma once

#include <cstdint>
#include <functional>

namespace clinidoc {

// body(first, last) over [begin, end) split into equal contiguous parts, one per thread (the caller's included), no
// part shorter than `grain`. Which thread runs a part never changes what it computes: each part writes only its own
// outputs, and must not throw. One loop runs at a time; a call from within a part runs inline.
void parallel_for(int64_t begin, int64_t end, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

}  // namespace clinidoc
