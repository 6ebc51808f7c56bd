// The Python face of the CPU kernels: engine/kernels/__init__.py builds this module on first use.

#include "decoder.h"
#include "int_matmul.h"

#include <pybind11/stl.h>
#include <torch/extension.h>

namespace py = pybind11;

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("int8_matmul", &clinidoc::int8_matmul, "x · (int8 q · scale per block of 32)ᵀ, x quantized to int8 per block of 32",
        py::call_guard<py::gil_scoped_release>());
  m.def("int4_matmul", &clinidoc::int4_matmul,
        "x · (4-bit q · scale + low per block of 32)ᵀ, x quantized to int8 per block of 32",
        py::call_guard<py::gil_scoped_release>());
  py::class_<clinidoc::IntWeight>(m, "IntWeight")
      .def(py::init<torch::Tensor, torch::Tensor, c10::optional<torch::Tensor>, c10::optional<torch::Tensor>>(),
           py::arg("weight"), py::arg("scale"), py::arg("low"), py::arg("bias"));
  py::class_<clinidoc::RoutedExperts>(m, "RoutedExperts")
      .def(py::init<torch::Tensor, torch::Tensor, std::vector<clinidoc::IntWeight>, std::vector<clinidoc::IntWeight>,
                    std::vector<clinidoc::IntWeight>, int64_t, int64_t, int64_t, bool, double>(),
           py::arg("router"), py::arg("bias"), py::arg("gate"), py::arg("up"), py::arg("down"), py::arg("top_k"),
           py::arg("groups"), py::arg("top_groups"), py::arg("normalize"), py::arg("scaling"));
  py::class_<clinidoc::DecoderLayer>(m, "DecoderLayer")
      .def(py::init<torch::Tensor, torch::Tensor, c10::optional<torch::Tensor>, c10::optional<torch::Tensor>,
                    clinidoc::IntWeight, clinidoc::IntWeight, clinidoc::IntWeight, clinidoc::IntWeight,
                    std::optional<clinidoc::RoutedExperts>>(),
           py::arg("input_norm"), py::arg("post_norm"), py::arg("q_norm"), py::arg("k_norm"), py::arg("qkv"),
           py::arg("o"), py::arg("gate_up"), py::arg("down"), py::arg("experts"));
  py::class_<clinidoc::Decoder>(m, "Decoder")
      .def(py::init<torch::Tensor, std::vector<clinidoc::DecoderLayer>, torch::Tensor, clinidoc::IntWeight,
                    torch::Tensor, torch::Tensor, int64_t, int64_t, int64_t, double>(),
           py::arg("embedding"), py::arg("layers"), py::arg("final_norm"), py::arg("head"), py::arg("cos"),
           py::arg("signed_sin"), py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("eps"))
      .def("forward", &clinidoc::Decoder::forward, py::arg("tokens"), py::arg("keys"), py::arg("values"),
           py::arg("starts"), py::arg("last_only"), py::call_guard<py::gil_scoped_release>());
}
