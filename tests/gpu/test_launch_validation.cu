// Bad inputs to the launchers return their error before anything is launched. The checks
// run on the host, so these tests need no GPU; where one is present, the poisoned output is
// also checked to be untouched.
#include <algorithm>
#include <climits>
#include <cstdint>
#include <iterator>
#include <random>
#include <vector>

#include "gpu/gpu_support.cuh"

namespace {

using T = __nv_bfloat16;
using sparq::Status;

// Never dereferenced on the host: validation fails first, or (where noted) needs a device.
T* fake(uintptr_t a) {
  return reinterpret_cast<T*>(a);
}

struct Valid {
  sparq::DecodeProblem p;
  sparq::SparqConfig cfg;
  std::vector<char> ws = std::vector<char>(16);
  Valid() {
    p.batch = 2;
    p.num_q_heads = 8;
    p.num_kv_heads = 2;
    p.head_dim = 128;
    p.capacity = 1024;
    cfg.r = 16;
    cfg.k = 64;
  }
  sparq::SparqDecodeParams<T> sparq_params() const {
    sparq::SparqDecodeParams<T> a;
    a.problem = p;
    a.config = cfg;
    a.q = fake(0x10000);
    a.cache = sparq::make_packed_cache_view<T>(p, fake(0x20000), fake(0x40000), fake(0x80000),
                                               reinterpret_cast<float*>(0x100000));
    a.lengths = reinterpret_cast<const int*>(0x200000);
    a.out = fake(0x300000);
    return a;
  }
};

Status launch(const sparq::SparqDecodeParams<T>& a, size_t ws_bytes = SIZE_MAX) {
  return sparq::sparq_decode(a, reinterpret_cast<void*>(0x400000), ws_bytes, nullptr);
}

TEST(LaunchValidation, SparqRejectsEachBadInput) {
  Valid v;
  auto with = [&](auto edit) {
    sparq::SparqDecodeParams<T> a = v.sparq_params();
    edit(a);
    return launch(a);
  };
  EXPECT_EQ(with([](auto& a) { a.config.r = 0; }), Status::kInvalidR);
  EXPECT_EQ(with([](auto& a) { a.config.r = 129; }), Status::kInvalidR);
  EXPECT_EQ(with([](auto& a) { a.config.k = 0; }), Status::kInvalidK);
  EXPECT_EQ(with([](auto& a) { a.config.local_window = 65; }), Status::kInvalidLocalWindow);
  EXPECT_EQ(with([](auto& a) { a.problem.head_dim = 96; }), Status::kUnsupportedHeadDim);
  EXPECT_EQ(with([](auto& a) { a.problem.num_kv_heads = 3; }), Status::kGroupSizeMismatch);
  EXPECT_EQ(with([](auto& a) { a.problem.max_length = 2000; }), Status::kLengthBeyondCapacity);
  EXPECT_EQ(with([](auto& a) { a.problem.batch = 0; }), Status::kInvalidBatch);
  EXPECT_EQ(with([](auto& a) { a.q = nullptr; }), Status::kNullPointer);
  EXPECT_EQ(with([](auto& a) { a.cache.kt = nullptr; }), Status::kNullPointer);
  EXPECT_EQ(with([](auto& a) { a.cache.vsum = nullptr; }), Status::kNullPointer);
  EXPECT_EQ(with([](auto& a) { a.lengths = nullptr; }), Status::kNullPointer);
  EXPECT_EQ(with([](auto& a) { a.cache.k = fake(0x20002); }), Status::kMisalignedPointer);
  EXPECT_EQ(with([](auto& a) { a.cache.kt_stride_d = 1025; }), Status::kMisalignedPointer);
  EXPECT_EQ(with([](auto& a) { a.cache.k_stride_s = 64; }), Status::kInvalidStride);
  EXPECT_EQ(with([](auto& a) {
              a.problem.num_q_heads = 64;
              a.problem.num_kv_heads = 1;
            }),
            Status::kUnsupportedGroupSize);
  EXPECT_EQ(launch(v.sparq_params(), 16), Status::kWorkspaceTooSmall);
  // Reallocation off needs no V sum.
  sparq::SparqDecodeParams<T> a = v.sparq_params();
  a.config.reallocation = false;
  a.cache.vsum = nullptr;
  a.config.r = 0;
  EXPECT_EQ(launch(a), Status::kInvalidR);
}

TEST(LaunchValidation, DenseAndAppendRejectBadInputs) {
  Valid v;
  sparq::DenseDecodeParams<T> d;
  d.problem = v.p;
  d.q = fake(0x10000);
  d.cache = v.sparq_params().cache;
  d.lengths = reinterpret_cast<const int*>(0x200000);
  d.out = fake(0x300000);
  void* ws = reinterpret_cast<void*>(0x400000);
  auto dense = [&](auto edit) {
    sparq::DenseDecodeParams<T> a = d;
    edit(a);
    return sparq::dense_decode(a, ws, SIZE_MAX, nullptr);
  };
  EXPECT_EQ(dense([](auto& a) { a.problem.head_dim = 32; }), Status::kUnsupportedHeadDim);
  EXPECT_EQ(dense([](auto& a) { a.out = nullptr; }), Status::kNullPointer);
  EXPECT_EQ(dense([](auto& a) { a.cache.v = fake(0x80008); }), Status::kMisalignedPointer);
  EXPECT_EQ(dense([](auto& a) { a.problem.num_q_heads = 7; }), Status::kGroupSizeMismatch);
  EXPECT_EQ(sparq::dense_decode(d, ws, 0, nullptr), Status::kWorkspaceTooSmall);
  EXPECT_EQ(sparq::dense_decode(d, nullptr, SIZE_MAX, nullptr), Status::kNullPointer);
  // launch_dense (the benchmark's fixed-split path) checks its plan against the workspace: a
  // plan of more splits than the workspace was sized for is refused, not written past it.
  const size_t planned = sparq::kernels::DensePlan<T>(v.p, nullptr).bytes;
  const sparq::kernels::DensePlan<T> wide(v.p, ws, 64);
  ASSERT_GT(wide.bytes, planned);
  EXPECT_EQ(sparq::kernels::launch_dense(d, wide, planned, nullptr), Status::kWorkspaceTooSmall);
  sparq::DenseDecodeParams<T> bad = d;
  bad.lengths = nullptr;
  EXPECT_EQ(sparq::kernels::launch_dense(bad, wide, SIZE_MAX, nullptr), Status::kNullPointer);

  sparq::KVAppendParams<T> ap;
  ap.problem = v.p;
  ap.cache = d.cache;
  ap.lengths = reinterpret_cast<int*>(0x200000);
  ap.new_k = fake(0x500000);
  ap.new_v = fake(0x600000);
  ap.num_new = 0;
  EXPECT_EQ(sparq::kv_append(ap, nullptr), Status::kInvalidNewTokens);
  ap.num_new = 2000;
  EXPECT_EQ(sparq::kv_append(ap, nullptr), Status::kInvalidNewTokens);
  ap.num_new = 1;
  ap.new_v = nullptr;
  EXPECT_EQ(sparq::kv_append(ap, nullptr), Status::kNullPointer);
}

TEST(LaunchValidation, WorkspaceQueriesValidateToo) {
  Valid v;
  size_t bytes = 0;
  EXPECT_EQ(sparq::sparq_decode_workspace_size<T>(v.p, v.cfg, nullptr), Status::kNullPointer);
  sparq::SparqConfig bad = v.cfg;
  bad.k = -1;
  EXPECT_EQ(sparq::sparq_decode_workspace_size<T>(v.p, bad, &bytes), Status::kInvalidK);
  EXPECT_EQ(sparq::sparq_decode_workspace_size<T>(v.p, v.cfg, &bytes), Status::kSuccess);
  EXPECT_GT(bytes, 0u);
  EXPECT_EQ(sparq::dense_decode_workspace_size<T>(v.p, &bytes), Status::kSuccess);
  EXPECT_GT(bytes, 0u);
}

// Shapes at and past every limit (heads, batch, capacity near INT_MAX, k and window past the
// length): each query returns an error or a size, and every size is at least the positions'
// and logits' bytes. Run under scripts/sanitize-cpu.sh, any integer overflow in the planning
// arithmetic is a failure.
TEST(LaunchValidation, WorkspaceQueriesSurviveExtremeShapes) {
  std::mt19937 rng(17);
  const int edge[] = {0,           1,      2,     7,     8,       63,      64,
                      65,          4095,   65535, 65536, 1 << 20, 1 << 30, (1 << 30) + 1,
                      INT_MAX - 7, INT_MAX};
  auto pick = [&](int lo) {
    const int v = rng() % 2 ? edge[rng() % std::size(edge)] : static_cast<int>(rng() % 5000);
    return std::max(v, lo);
  };
  const int dims[] = {0, 64, 96, 128, 256};
  int sized = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    sparq::DecodeProblem p;
    p.batch = pick(0);
    p.num_kv_heads = pick(0) % 70000;
    p.num_q_heads = p.num_kv_heads * (1 + static_cast<int>(rng() % 8));
    p.head_dim = dims[rng() % std::size(dims)];
    p.capacity = pick(0);
    p.max_length = rng() % 3 ? 0 : pick(0);
    sparq::SparqConfig c;
    c.r = pick(0) % 300;
    c.k = pick(0);
    c.local_window = pick(0) % 100;
    c.gqa = rng() % 2 ? sparq::GqaMode::kShared : sparq::GqaMode::kPerQueryHead;
    for (auto mode : {sparq::AttentionMode::kDense, sparq::AttentionMode::kSparq,
                      sparq::AttentionMode::kAuto}) {
      size_t bytes = 0;
      const Status s = sparq::decode_attention_workspace_size<T>(mode, p, c, &bytes);
      if (!sparq::ok(s)) continue;
      ++sized;
      const int64_t rows = static_cast<int64_t>(p.batch) * p.num_q_heads;
      EXPECT_GE(bytes, static_cast<size_t>(rows) * sizeof(float))
          << "B " << p.batch << " Hq " << p.num_q_heads << " S " << p.capacity;
    }
  }
  EXPECT_GT(sized, 100);  // the valid shapes were reached too
}

TEST(LaunchValidation, RejectedLaunchLeavesOutputUntouched) {
  SPARQ_REQUIRE_GPU();
  Valid v;
  sparq::test::DeviceBuffer<T> out(size_t(v.p.batch) * v.p.num_q_heads * v.p.head_dim);
  out.poison();
  const std::vector<T> before = out.download();
  sparq::SparqDecodeParams<T> a = v.sparq_params();
  a.out = out.get();
  a.config.k = 0;
  EXPECT_EQ(launch(a), Status::kInvalidK);
  CUDA_ASSERT(cudaDeviceSynchronize());
  CUDA_ASSERT(cudaGetLastError());
  const std::vector<T> after = out.download();
  EXPECT_EQ(0, memcmp(before.data(), after.data(), before.size() * sizeof(T)));
}

}  // namespace
