"""CPU kernels of our own, in C++, compiled on first use with the machine's compiler and cached.

`cpu_kernels()` holds the int8 / int4 weight matmuls of a decode step (`int_matmul.cpp`, engine/quantize.py) and a
Llama-family forward pass of a few tokens in one call over those weights (`decoder.cpp`, engine/cpu_decoder.py),
whose loops share worker threads of their own (`workers.cpp`). They
need an x86 CPU with AVX2, FMA and F16C (what PyTorch reports as AVX2 or AVX512) and a C++ compiler; without either,
`cpu_kernels()` is None and the model runs in PyTorch ops, its quantized layers multiplying by their dequantized
weights in fp32, which is correct but slower. The first build takes about a minute; later processes load the cached
library.
"""

from __future__ import annotations

import functools
import os
import shutil
import warnings
from pathlib import Path
from types import ModuleType

import torch
from platformdirs import user_cache_dir

_SOURCES = [str(Path(__file__).with_name(name)) for name in ("int_matmul.cpp", "decoder.cpp", "workers.cpp", "bindings.cpp")]
_FLAGS = ["-O3", "-mavx2", "-mfma", "-mf16c", "-fopenmp"]


@functools.cache
def cpu_kernels() -> ModuleType | None:
    """The compiled kernels' module, or None where it cannot run or be built here."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
        return None
    from torch.utils.cpp_extension import load  # imported here: it is slow to import and needs setuptools

    build = _build_directory()
    build.mkdir(parents=True, exist_ok=True)
    _put_ninja_on_path()
    try:
        return load(
            name="clinidoc_cpu_kernels", sources=_SOURCES, build_directory=str(build),
            extra_cflags=_FLAGS, extra_ldflags=["-fopenmp"], verbose=False,
        )
    except Exception as error:  # noqa: BLE001 - no compiler, or one that fails: run without the kernels
        warnings.warn(f"Built without the CPU kernels ({error}); quantized layers run in fp32.", stacklevel=2)
        return None


def _put_ninja_on_path() -> None:
    """torch builds with the `ninja` it finds on PATH; the `ninja` package's own sits in the virtual environment's
    bin, which is not on PATH when the interpreter is run by its path (`.venv/bin/python`)."""
    if shutil.which("ninja") is None:
        import ninja

        os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")


def _build_directory() -> Path:
    """One per torch version, which the library links against; torch rebuilds it when the source changes."""
    root = Path(os.environ.get("CLINIDOC_CACHE_DIR") or user_cache_dir("clinidoc"))
    return root / "kernels" / f"torch-{torch.__version__}"
