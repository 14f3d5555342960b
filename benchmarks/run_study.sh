#!/usr/bin/env bash
# The reduced hyperparameter study: every sweep in configs/sweeps/study/, then `rnner report`
# for each, then benchmarks/study_summary.py (docs/hyperparameters.md).
#
#   benchmarks/run_study.sh                    # the study: runs/study/NAME, ~30 min on 2 cores
#   STUDY_SMOKE=1 benchmarks/run_study.sh      # a seconds-long check of the same pipeline
#
# Rerunning resumes: `rnner tune` skips finished trials, so a stopped study (Ctrl-C, or a
# crash) picks up where it was and a finished one only redoes the reports and the summary.
#
# Scheduling: the sweeps are small (1 to 5 configurations of 3 seeds), so running each on two
# workers would leave one core idle whenever a sweep has an odd number of trials left. Instead
# STUDY_LANES single-worker lanes (one torch thread each) take the sweeps from one queue,
# longest first. Every run still uses exactly one core, as `--workers 2` would give it.
#
# Environment:
#   STUDY_LANES      parallel lanes (default 2: one per core of the 2-core machine)
#   STUDY_OUT        output root (default runs/study; runs/study-smoke with any override below)
#   STUDY_ONLY       a shell pattern of sweep names to run, e.g. '0[3-5]_*' (default: all)
#   STUDY_SENTENCES  override base.toml's data.max_sentences (and the seed baseline's)
#   STUDY_EPOCHS     override the epochs
#   STUDY_SEEDS      override the seeds, e.g. "1" or "1, 2"
#   STUDY_SMOKE=1    shorthand for STUDY_SENTENCES=100 STUDY_EPOCHS=1 STUDY_SEEDS=1
#   STUDY_SUMMARY    where the summary goes (default docs/hyperparameters.md for the real
#                    study, STUDY_OUT/hyperparameters.md otherwise); "none" skips it
#   RNNER, PYTHON    the commands to use (default: rnner, python; activate the venv first)
set -u -o pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SRC="$ROOT/configs/sweeps/study"
RNNER=${RNNER:-rnner}
PYTHON=${PYTHON:-python}
LANES=${STUDY_LANES:-2}

if [[ ${STUDY_SMOKE:-0} == 1 ]]; then
    : "${STUDY_SENTENCES:=100}" "${STUDY_EPOCHS:=1}" "${STUDY_SEEDS:=1}"
fi
SCALED=0
[[ -n ${STUDY_SENTENCES:-}${STUDY_EPOCHS:-}${STUDY_SEEDS:-} ]] && SCALED=1
# How to reproduce this study, for the summary: the overrides in effect, then the script.
REPRO="benchmarks/run_study.sh"
for var in STUDY_SENTENCES STUDY_EPOCHS STUDY_SEEDS STUDY_ONLY; do
    [[ -n ${!var:-} ]] && REPRO="$var='${!var}' $REPRO"
done
if ((SCALED)); then
    OUT=${STUDY_OUT:-runs/study-smoke}
    SUMMARY=${STUDY_SUMMARY:-$OUT/hyperparameters.md}
else
    OUT=${STUDY_OUT:-runs/study}
    SUMMARY=${STUDY_SUMMARY:-docs/hyperparameters.md}
fi
mkdir -p "$OUT"

# A scaled-down study runs rewritten copies of the sweep files (a different study: tune would
# refuse to mix them with the real one's results, and they go to another output root anyway).
SWEEPS=$SRC
if ((SCALED)); then
    SWEEPS="$OUT/.sweeps"
    rm -rf "$SWEEPS"
    mkdir -p "$SWEEPS"
    for f in "$SRC"/*.toml; do
        sed -E \
            -e "s|^base = \"(\.\./[^\"]*)\"|base = \"$SRC/\1\"|" \
            ${STUDY_SENTENCES:+-e "s/^(\"?(data\.)?max_sentences\"?) = [0-9]+/\1 = $STUDY_SENTENCES/"} \
            ${STUDY_EPOCHS:+-e "s/^(\"?(train\.)?epochs\"?) = [0-9]+/\1 = $STUDY_EPOCHS/"} \
            ${STUDY_SEEDS:+-e "s/^seeds = \[.*\]/seeds = [$STUDY_SEEDS]/"} \
            "$f" >"$SWEEPS/$(basename "$f")"
    done
fi

# The queue, longest first: the batch-size sweep (batch 1 trains ~8x slower than 32), then the
# optimizer sweeps, then the rest by decreasing number of configurations; baselines last.
ORDER=(02_batch_size 01_optimizer_sgd 01_optimizer_sgd_momentum 01_optimizer_adam
       01_optimizer_adamw 01_optimizer_rmsprop 01_optimizer_adagrad 01_optimizer_nadam
       07_char_encoder 03_dropout 11_clip 06_cell 04_hidden_size 05_layers 10_embeddings
       09_scheme 08_output 00_default 00_seed_baseline)
QUEUE=()
for name in "${ORDER[@]}"; do
    [[ -f $SWEEPS/$name.toml ]] && QUEUE+=("$name")
done
for f in "$SWEEPS"/[0-9]*.toml; do  # sweeps added later and not yet in ORDER
    name=$(basename "$f" .toml)
    [[ " ${QUEUE[*]} " == *" $name "* ]] || QUEUE+=("$name")
done
if [[ -n ${STUDY_ONLY:-} ]]; then
    picked=()
    for name in "${QUEUE[@]}"; do
        # shellcheck disable=SC2053  # STUDY_ONLY is a pattern on purpose
        [[ $name == $STUDY_ONLY ]] && picked+=("$name")
    done
    QUEUE=("${picked[@]}")
fi
if ((${#QUEUE[@]} == 0)); then
    echo "no sweeps to run (STUDY_ONLY=${STUDY_ONLY:-})" >&2
    exit 2
fi

STATE=$(mktemp -d "${TMPDIR:-/tmp}/rnner-study.XXXXXX")  # claims and pids of this invocation
TIMES="$OUT/timings.tsv"
[[ -f $TIMES ]] || printf 'finished_at\tsweep\tlane\tseconds\ttune_rc\treport_rc\n' >"$TIMES"

lane() {
    local id=$1 name rc rrc t0 secs
    for name in "${QUEUE[@]}"; do
        [[ -e $STATE/stop ]] && return 0
        mkdir "$STATE/claim-$name" 2>/dev/null || continue  # another lane has it
        t0=$(date +%s)
        echo "[lane $id] $(date +%T) start $name"
        OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$RNNER" tune "$SWEEPS/$name.toml" --workers 1 \
            --output "$OUT/$name" >"$STATE/$name.out" 2>&1 &
        echo $! >"$STATE/lane-$id.pid"
        wait $!
        rc=$?
        rm -f "$STATE/lane-$id.pid"
        cat "$STATE/$name.out" >>"$OUT/$name.log"
        grep -E '^(study|best):' "$STATE/$name.out" | sed "s/^/[lane $id]   /"
        if ((rc == 130)) || [[ -e $STATE/stop ]]; then
            echo "[lane $id] $name interrupted; rerun to resume"
            return 0
        fi
        "$RNNER" report "$OUT/$name" >>"$OUT/$name.log" 2>&1
        rrc=$?
        secs=$(($(date +%s) - t0))
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -Is)" "$name" "$id" "$secs" "$rc" "$rrc" \
            >>"$TIMES"
        echo "[lane $id] $(date +%T) done  $name in ${secs} s (tune exit $rc, report exit $rrc)"
        if ((rc != 0 || rrc != 0)); then
            echo "[lane $id]   see $OUT/$name.log"
            touch "$STATE/failed"
        fi
    done
}

stop() {
    echo "stopping: each run checkpoints; rerun the same command to resume" >&2
    touch "$STATE/stop"
    for f in "$STATE"/lane-*.pid; do
        [[ -f $f ]] && kill -TERM "$(cat "$f")" 2>/dev/null
    done
}
trap stop INT TERM

# The machine, for the summary (the study's numbers are only meaningful with it); a resumed
# study keeps the first start's record and notes the resumption.
if [[ -f $OUT/machine.txt ]]; then
    echo "resumed=$(date -Is)" >>"$OUT/machine.txt"
else {
    echo "cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "cpus=$(grep -c '^processor' /proc/cpuinfo)"
    echo "lanes=$LANES"
    echo "torch=$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null)"
    echo "started=$(date -Is)"
} >"$OUT/machine.txt"
fi

echo "study: ${#QUEUE[@]} sweeps from $SWEEPS -> $OUT, $LANES lanes"
START=$(date +%s)
pids=()
for ((i = 1; i <= LANES; i++)); do
    lane "$i" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    while ! wait "$p"; do  # a trapped signal interrupts wait; keep waiting for the lane
        kill -0 "$p" 2>/dev/null || break
    done
done
TOTAL=$(($(date +%s) - START))
echo "all lanes done in ${TOTAL} s ($((TOTAL / 60)) min)"

status=0
[[ -e $STATE/failed ]] && status=1
if [[ -e $STATE/stop ]]; then
    rm -rf "$STATE"
    exit 130
fi
rm -rf "$STATE"
if [[ $SUMMARY != none ]]; then
    "$PYTHON" "$ROOT/benchmarks/study_summary.py" --runs "$OUT" --output "$SUMMARY" \
        --command "$REPRO" || status=1
fi
exit $status
