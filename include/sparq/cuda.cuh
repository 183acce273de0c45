// sparq GPU API: include from .cu files. Brings the host part (<sparq/sparq.hpp>), the device
// building blocks (sparq/device/) and the launchers: sparq_decode, dense_decode, kv_append.
#pragma once

#include "sparq/sparq.hpp"
#include "sparq/device/approx_scores.cuh"
#include "sparq/device/mean_interpolation.cuh"
#include "sparq/device/reduce.cuh"
#include "sparq/device/softmax_state.cuh"
#include "sparq/device/sparse_attention.cuh"
#include "sparq/device/topk_select.cuh"
#include "sparq/device/topr_select.cuh"
#include "sparq/device/vec.cuh"
#include "sparq/kernels/decode_attention.cuh"
#include "sparq/kernels/dense_decode.cuh"
#include "sparq/kernels/kv_append.cuh"
#include "sparq/kernels/sparq_decode.cuh"
