// Portability macros shared by host-only and CUDA translation units.
#pragma once

#if defined(__CUDACC__)
#define SPARQ_HOST_DEVICE __host__ __device__
#define SPARQ_DEVICE __device__
#define SPARQ_FORCEINLINE __forceinline__
#else
#define SPARQ_HOST_DEVICE
#define SPARQ_DEVICE
#define SPARQ_FORCEINLINE inline
#endif
