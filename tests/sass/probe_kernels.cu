// The kernels whose load scheduling tests/sass/check_loads_in_flight.py checks, instantiated
// for bf16 and head_dim 128 (the benchmark's shapes). Compiled to a cubin by that script only.
#include <sparq/cuda.cuh>

namespace k = sparq::kernels;
template __global__ void k::score_kernel<__nv_bfloat16, 128>(k::ScoreParams<__nv_bfloat16>);
template __global__ void k::attend_kernel<__nv_bfloat16, 128, false>(
    k::AttendParams<__nv_bfloat16>);
template __global__ void k::attend_kernel<__nv_bfloat16, 128, true>(k::AttendParams<__nv_bfloat16>);
template __global__ void k::select_kernel<true, 1024>(k::SelectParams);
template __global__ void k::select_cluster_kernel<256>(k::SelectParams);
template __global__ void k::select_cluster_kernel<512>(k::SelectParams);
template __global__ void k::sparq_fused_kernel<__nv_bfloat16, 128, 8>(
    k::FusedParams<__nv_bfloat16>);
