#!/usr/bin/env bash
# The one prepared run for the GPU machine (../shared/device/README.md), at most 10 minutes (one call):
#   here, once:  bash ../shared/device/wheels.sh pytest==8.4.2 iniconfig==2.1.0 pluggy==1.6.0 packaging==25.0 \
#                    array-api-strict==2.6.1
#   there:       bash benchmarks/gpu_check.sh            (writes its logs to $OUT)
# 1. the GPU tests (CuPy arrays, CuPy-backed Dask arrays, pinned staging, Parquet by two workers sharing
#    the GPU) and the simulated-device tests; 2. bench_gpu.py (cached, streamed with a 4 GiB cache,
#    scikit-learn on torch CUDA, dgmm on the CPU cores, one E-step fused and unfused); 3. the GPU memory a
#    16M-row CuPy fit needs beyond its data (bench_device_memory.py); 4. bench_cores.py (2, 8 and 16 cores).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 SCIPY_ARRAY_API=1
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
timeout 100 python3 -m pytest -q -p no:cacheprovider -x tests/execution/test_gpu.py \
  tests/execution/test_device_data.py 2>&1 | tail -25 | tee "$OUT/tests.txt"
timeout 300 python3 benchmarks/bench_gpu.py --iters 3 --repeats 1 --parquet-dir /tmp/dgmm-parquet \
  2>&1 | tee "$OUT/bench_gpu.txt"
timeout 60 python3 benchmarks/bench_device_memory.py --xp cupy --rows 16000000 --inits kmeans,random \
  2>&1 | tee "$OUT/device_memory.txt"
timeout 110 python3 benchmarks/bench_cores.py --cores 2,8,16 --iters 4 --repeats 1 2>&1 | tee "$OUT/cores.txt"
