#!/usr/bin/env bash
# Poll a bench/quality_human.py run on the device and bring back what it has so far.
#
#     bash bench/qh_poll.sh /tmp/qh [SECONDS]
#
# Waits up to SECONDS (default 540: a call is at most 600), ending early once results.json is
# written; prints status.txt and the driver log's tail; packs the run's metrics, final scores,
# plans and logs (no checkpoints, no FASTA) into $OUT/qh.tgz, so that a machine lost between
# calls loses at most one call's progress.  Here: tar xzf qh.tgz -C runs/qh, then
# python bench/quality_human.py --out-dir runs/qh --phases report (same flags as the run).
set -u
dir=$1
limit=${2:-540}
end=$((SECONDS + limit))
while [ $SECONDS -lt $end ] && [ ! -f "$dir/human/results.json" ]; do sleep 10; done
head -n 40 "$dir/human/status.txt" 2>/dev/null
tail -n 5 "$dir.log" 2>/dev/null
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
tar czf "${OUT:-/tmp}/qh.tgz" --exclude=checkpoints --exclude='*.fa' --exclude='*.fa.gz' -C "$dir" human 2>/dev/null
ls -la "${OUT:-/tmp}/qh.tgz"
