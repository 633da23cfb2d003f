#!/usr/bin/env bash
# GPU throughput benches in stages, each under its own time limit; name the stages of each device call.
#
#     OUT=$OUT bash bench/device_perf.sh [tests] [sweep-L] [sweep-dna] [conv] [windows] [long] [shared]
#         [scoring] [profile] [compile]
#     (here: mkdir -p runs/perf && tar xzf FILES_AT/device_perf.tgz -C runs/perf)
#
# With no arguments tests, sweep-L, sweep-dna, long and profile run, in this order (each under its own
# time limit, so one that hangs or runs out of memory does not take the rest with it; the limits add
# up to more than two device calls, so name the stages of each call: e.g. "tests", "sweep-L",
# "sweep-dna", "long shared", "scoring profile"; compile is a call of its own):
#   tests    pytest -m gpu (-k $TESTS_K where set; the whole set took over 300 s on a fresh machine,
#            mostly compiling and tuning): fast kernels (the conv1d's backward included), fused ops, the SSD and RMSNorm in
#            pieces, shared-prefix scoring == reference on CUDA
#   sweep-L, sweep-dna  bench/train_throughput.py: hnet-2stage-L (sweep-L) or dna-hnet (sweep-dna) with
#            its matched Transformer and Mamba-2, 2/8/16 × 8192 tokens per step, variants
#            $SWEEP_VARIANTS (default fused+varlen, attention on the varlen kernel as before, against
#            fused, attention through cuDNN's SDPA on dense batches on Hopper); each stage nearly
#            fills a device call (hnet-2stage-L's three models did not finish in 240 s on 2026-12-02),
#            and both add their rows to $WORK/sweep.json, so the section holds both models (here:
#            bench/train_throughput.py --from-json sweep.json)
#   conv     bench/conv_backward.py: the Triton conv1d at a training step's shape, beside an earlier
#            version (CONV_BEFORE, default .data/conv_triton_before.py, carried) in one run
#   windows  bench/scaling.py: training steps on one 64 k / 128 k / 256 k window of hnet_2stage_L, without
#            and with activation checkpointing (blocks): time and peak memory ($WORK/img/ has the figure)
#   long     bench/long_window.py: one 8 k / 100 k / 1 M bp window of the 100 M DNA H-Net
#   shared   bench/inference.py --shared-only: shared-prefix and saturation rows ($WORK/shared.json); a call
#            of its own: on a fresh machine the router tuning alone took 169 s (compiling and tuning
#            mamba-ssm's kernels), and a 240 s limit cut the stage off twice (2026-12-02)
#   scoring  bench/profile_scoring.py: shared-prefix against full SNV scoring under torch.profiler
#   profile  bench/profile_step.py for the H-Net, Transformer and Mamba-2 at 8 × 8192 (top kernels)
#   compile  bench/train_throughput.py at 8 × 8192: fused against fused+compile
# Everything is written under $WORK (default /tmp/device_perf, which survives between calls of a
# held machine): markdown sections in $WORK/benchmarks.md (the section names of
# docs/benchmarks.md), logs in $WORK/*.log, profiler summaries in $WORK/profile-*/summary.json.
# After every stage $WORK is packed into $OUT/device_perf.tgz (Chrome traces left out): a device
# call brings back at most 8 files, and a stage cut off by the call's limit still leaves the rest.
set -u
cd "$(dirname "$0")/.."
RESULTS=${OUT:-/tmp/device_perf_out}  # what comes back
WORK=${WORK:-/tmp/device_perf}
mkdir -p "$WORK" "$RESULTS"
pack() { tar czf "$RESULTS/device_perf.tgz" --exclude='trace.json*' -C "$WORK" . ; }
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/triton}
# Autotuning results on disk too (Triton's knob), so each stage's process does not tune again the
# shapes an earlier stage tuned: on a fresh machine tuning took 85 of a stage's 110 s (2026-12-01).
export TRITON_CACHE_AUTOTUNING=${TRITON_CACHE_AUTOTUNING:-1}
export PYTHONUNBUFFERED=1
PY=${PY:-python}
DOC="$WORK/benchmarks.md"
stages=${*:-tests sweep-L sweep-dna long profile}
t0=$(date +%s)

stage() {  # stage NAME LIMIT_S COMMAND...: run with a time limit, log, report the time taken
    local name=$1 limit=$2
    shift 2
    local start
    start=$(date +%s)
    echo "=== $name (limit ${limit}s, $(( start - t0 ))s into the session)"
    timeout "$limit" "$@" > "$WORK/$name.log" 2>&1
    local rc=$?
    echo "=== $name: exit $rc after $(( $(date +%s) - start ))s"
    tail -n 40 "$WORK/$name.log"
    pack
}

# hnet_seq.modalities/.cli/.configs are mapped from top-level folders: only an install provides them.
$PY -c "import hnet_seq.modalities" 2>/dev/null || $PY -m pip install -q --no-deps --no-build-isolation -e . > "$WORK/install.log" 2>&1
$PY -c "import hnet_seq.kernels.fast as f; print(f.availability())" | tee "$WORK/kernels.txt"
grep -q "ssd_fast': 'available" "$WORK/kernels.txt" || echo "WARNING: no mamba-ssm: H-Net/Mamba-2 rows use the reference SSD (not representative)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$WORK/device.txt"
for s in $stages; do
    case $s in
    tests) stage tests 300 $PY -m pytest -q -m gpu -k "${TESTS_K:-}" tests/unit/test_fast_kernels_gpu.py tests/unit/test_fused.py \
               tests/unit/test_ssd_pieces.py tests/unit/test_row_offsets.py tests/unit/test_prefix_scoring.py \
               tests/unit/test_dense_attention.py ;;
    sweep-L|sweep-dna)  # one model and its matched baselines per stage; the rows add up in sweep.json
        model=$([ "$s" = sweep-L ] && echo hnet-2stage-L || echo dna-hnet)
        stage "$s" 420 $PY bench/train_throughput.py --models "$model" --batches 2,8,16 --variants "${SWEEP_VARIANTS:-fused+varlen,fused}" \
            --warmup 5 --steps 10 --tune-steps 40 --json "$WORK/sweep.json" --out "$DOC" ;;
    conv)  # the conv1d beside the version in $CONV_BEFORE (here: git show REV:hnet_seq/kernels/conv_triton.py)
        before=${CONV_BEFORE:-.data/conv_triton_before.py}
        stage conv 150 $PY bench/conv_backward.py $([ -f "$before" ] && echo --before "$before") --out "$DOC" ;;
    windows) stage windows 240 $PY bench/scaling.py --lengths 65536,131072,262144 --checkpointing none,blocks \
                 --fit-from 65536 --repeats 2 --section scaling_checkpointing --out "$DOC" ;;
    long) stage long 150 $PY bench/long_window.py --tune-steps 30 --out "$DOC" ;;
    shared) stage shared 540 $PY bench/inference.py --shared-only --variants 300 --tune-steps 30 --json "$WORK/shared.json" ;;
    scoring) stage scoring 150 $PY bench/profile_scoring.py --variants 64 --tune-steps 30 --out "$WORK/profile-scoring" ;;
    profile)
        for m in hnet transformer mamba2; do
            stage "profile-$m" 40 $PY bench/profile_step.py --model "$m" --batch 8 --tune-steps 30 --warmup 3 \
                --steps 5 --profile-steps 1 --out "$WORK/profile-$m"
        done ;;
    compile) stage compile 420 $PY bench/train_throughput.py --models dna-hnet,hnet-2stage-L --batches 8 \
                 --variants fused,fused+compile --warmup 5 --steps 10 --tune-steps 40 \
                 --section train_throughput_compile --out "$DOC" ;;
    *) echo "unknown stage $s"; exit 2 ;;
    esac
done
echo "=== done after $(( $(date +%s) - t0 ))s; sections in $DOC"
