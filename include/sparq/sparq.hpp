// sparq: SparQ attention for LLM decoding. Host-usable part of the library (no GPU needed to
// include it): types, configuration, problem description, transfer model and CPU reference.
// Kernels and launchers live in <sparq/cuda.cuh>.
#pragma once

#include "sparq/attention_mode.hpp"
#include "sparq/config.hpp"
#include "sparq/dtype.hpp"
#include "sparq/problem.hpp"
#include "sparq/selection_units.hpp"
#include "sparq/status.hpp"
#include "sparq/transfers.hpp"
#include "sparq/version.hpp"
#include "sparq/reference/append.hpp"
#include "sparq/reference/dense.hpp"
#include "sparq/reference/sparq.hpp"
