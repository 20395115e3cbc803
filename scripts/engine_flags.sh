# Sourced by setup.sh and llamacpp_tools.sh: the llama.cpp build flags for this CPU.
# llama.cpp's default build targets the build machine's CPU (GGML_NATIVE), AMX included
# where cpuinfo lists it; some virtual machines list AMX but do not enable it, and every
# prompt of more than one token then dies with SIGILL. So the build names its instruction
# sets: AVX-512 (with VNNI, VBMI, BF16) where the CPU has them all, else AVX2. The choice
# also fixes the answers: kernels of different widths round differently, and the tests'
# expected answers were recorded on an AVX-512 build. Set CMAKE_ARGS to build otherwise.
# Sets CMAKE_ARGS (exported) and engine_features (the features the smoke test checks).
engine_features=""
if [ -z "${CMAKE_ARGS:-}" ] && [ "$(uname -m)" = x86_64 ]; then
  flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null) "
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
  engine_features="AVX2"
  has_all=yes
  for f in avx512f avx512bw avx512vl avx512_vnni avx512vbmi avx512_bf16; do
    case "$flags" in *" $f "*) ;; *) has_all=no ;; esac
  done
  if [ "$has_all" = yes ]; then
    CMAKE_ARGS="$CMAKE_ARGS -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON"
    engine_features="AVX2 AVX512 AVX512_VBMI AVX512_VNNI AVX512_BF16"
  fi
  export CMAKE_ARGS
fi
