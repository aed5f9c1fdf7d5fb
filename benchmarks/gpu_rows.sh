#!/usr/bin/env bash
# The GPU rows of benchmarks/README.md that issue 17 (scale) asks for, as one prepared run for a
# session lent a device, inside one `run` call (timeout_s 600). The rows' own limits add up to
# 9 minutes; the sizes are chosen to take about 5 on one H100/H200, which leaves time to rerun
# within a 15-minute device budget. Sizes are the CPU rows' sizes, so ratios compare directly.
#
#   bash benchmarks/gpu_rows.sh            # on the device machine, from the repository root
#   bash benchmarks/gpu_rows.sh --smoke    # tiny sizes: checks the script itself on a CPU
#
# The device image has jax (CUDA), equinox, diffrax, optax, lineax, jaxtyping, scipy and tqdm,
# so sqdiff runs from the working tree (PYTHONPATH), with nothing to install. Every row has its
# own time limit and its own log; a row that fails or runs out of time is reported and the next
# one runs. Everything lands in $OUT (default ./gpu-rows): one log per row, and summary.txt with
# the lines to copy into benchmarks/README.md and docs/studies/u1.md.
#
# Rows, most wanted first:
#   flow32 bench_exact_flow.py (issue 38): the split-step flow trained by reverse KL at 2D φ⁴,
#          L = 32 (Gerdes et al.'s couplings), exact IMH against HMC, FA-HMC, HMC + Wolff
#   dm32   bench_dm_vs_hmc.py at the published 2D φ⁴ setting (L = 32, κ = 0.27): ESS/s of HMC,
#          FA-HMC, HMC + Wolff and DM + MAALA, training time, break-even
#   (dm64, the same at L = 64, was measured 2026-12-04 and gave its slot to flow32)
#   u1     χ_t at β = 7, L = 16: DM (trained on exact L = 8 samples) + MAALA + instanton moves
#          against HMC + instanton moves, timed, measured with Γ-method errors (docs/studies/u1.md)
#   sde    bench_adaptive_sde.py: evaluations per sample and wall time, fixed against adaptive
set -uo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$SELF")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-$PWD/gpu-rows}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
SMOKE=0 ONLY=""
for arg in "$@"; do
  case $arg in
    --smoke) SMOKE=1 ;;
    --u1) ONLY=u1 ;; # internal: the u1 row alone, so that `timeout` can limit it
    *) echo "usage: $0 [--smoke]" >&2 && exit 2 ;;
  esac
done
PY="${PYTHON:-python3}"

if ((SMOKE)); then  # every row at toy size: seconds each on a CPU
  FLOW32=(--L 8 --chains 4 --n-hmc 32 --iters 10 --proposals 64 --flow-steps 4 --features 4)
  DM32=(--L 8 --chains 4 --n-hmc 32 --iters 20 --n-dm 8 --steps 10 --mh-steps 4)
  U1_N=64 U1_ITERS=20 U1_L=8 U1_SAMPLE=(--steps 10 --n 32 --chains 8 --therm 10)
  U1_HMC=(--n 32 --chains 4 --therm 10)
  SDE=(--n 1000 --rows "em 30")
  LIMIT_FLOW32=300 LIMIT_DM32=300 LIMIT_U1=300 LIMIT_SDE=300
else
  FLOW32=(--L 32 --iters 2000 --batch 256 --proposals 16384)
  DM32=()
  U1_N=16384 U1_ITERS=4000 U1_L=16
  U1_SAMPLE=(--steps 200 --n 3200 --chains 64 --thin 10 --therm 1000)
  U1_HMC=(--n 2000 --chains 8 --therm 200)
  SDE=(--rows 0.05/0.02) # all 34 rows: 322 s on the H200 (2026-12-04), mostly compilation
  # 540 s at most; dm32 and u1 took 85 and 97 s on the H200; flow32 is new (unmeasured)
  LIMIT_FLOW32=150 LIMIT_DM32=130 LIMIT_U1=140 LIMIT_SDE=120
fi

u1() {  # docs/studies/u1.md's commands, at β = 7
  local d="$OUT/u1-work" sq=("$PY" -m sqdiff) t0
  mkdir -p "$d"
  "${sq[@]}" generate u1 --L 8 --beta 7 --sampler exact --n "$U1_N" --out "$d/ex8.npz" --quiet &&
    t0=$SECONDS &&
    "${sq[@]}" train "$d/ex8.npz" --out "$d/model" --iters "$U1_ITERS" --batch 64 --channels 16 \
      --depth 2 --sigma 10 --lr 2e-3 --importance --quiet &&
    echo "training: $((SECONDS - t0)) s (with compilation)" && t0=$SECONDS &&
    "${sq[@]}" sample "$d/model" --method maala --anneal langevin --c 0.05 --instanton 4 \
      --L "$U1_L" "${U1_SAMPLE[@]}" --out "$d/dmi.npz" --quiet &&
    echo "DM + MAALA + instanton sampling: $((SECONDS - t0)) s (with compilation)" &&
    t0=$SECONDS &&
    "${sq[@]}" generate u1 --L "$U1_L" --beta 7 --sampler hmc+instanton "${U1_HMC[@]}" \
      --out "$d/hi.npz" --quiet &&
    echo "HMC + instanton sampling: $((SECONDS - t0)) s (with compilation)" &&
    echo "--- DM + MAALA + instanton moves" && "${sq[@]}" measure "$d/dmi.npz" &&
    echo "--- HMC + instanton moves" && "${sq[@]}" measure "$d/hi.npz"
  local rc=$?
  rm -rf "$d"
  return $rc
}
if [[ $ONLY == u1 ]]; then
  u1
  exit
fi

{
  echo "# gpu_rows.sh $(date -u +%FT%TZ), git $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  "$PY" -c 'import jax; print("jax", jax.__version__, jax.devices())'
} | tee "$SUMMARY"

# row NAME LIMIT_S COMMAND...: run it under its time limit, log to $OUT/NAME.log, report
row() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local status="ok"
  ((rc == 124)) && status="TIMED OUT after ${limit} s"
  ((rc != 0 && rc != 124)) && status="FAILED (exit $rc)"
  echo "## $name: $status, $((SECONDS - t0)) s" | tee -a "$SUMMARY"
  return $rc
}

row flow32 "$LIMIT_FLOW32" "$PY" benchmarks/bench_exact_flow.py "${FLOW32[@]}" &&
  grep -E '^(HMC|FA-HMC|HMC\+Wolff|IMH|!) ' "$OUT/flow32.log" >>"$SUMMARY"

row dm32 "$LIMIT_DM32" "$PY" benchmarks/bench_dm_vs_hmc.py "${DM32[@]}" &&
  grep -E '^(HMC|FA-HMC|HMC\+Wolff|DM\+MAALA|!) ' "$OUT/dm32.log" >>"$SUMMARY"

row u1 "$LIMIT_U1" bash "$SELF" --u1 $( ((SMOKE)) && echo --smoke) &&
  grep -E ' s \(with|^---|plaquette|chi_t|acceptance' "$OUT/u1.log" >>"$SUMMARY"

row sde "$LIMIT_SDE" "$PY" benchmarks/bench_adaptive_sde.py "${SDE[@]}" &&
  tail -n 30 "$OUT/sde.log" >>"$SUMMARY"

echo "# done in $SECONDS s" | tee -a "$SUMMARY"
