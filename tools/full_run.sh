#!/usr/bin/env bash
# The full-profile runs behind data/results/, on one GPU, one job at a time (data/results/README.md
# gives the times).
#
#   tools/full_run.sh run  WORK JOB...   run the named jobs in order, each alone on the GPU;
#                                        WORK/<job>.log and WORK/<job>.done ("exit-status seconds")
#   tools/full_run.sh pack WORK DEST     copy what is finished, strip the test predictions (etecrm table
#                                        --strip-predictions) and write DEST/full_results.tgz.part-*
#
# Jobs: sub1, sub2 (every ETECRM variant and the Gabor models, 5 model seeds; sub1 alone is the
# "one subject" timing), alexnet (subject 1, one seed, untrained AlexNet: a reference only),
# controls_gabor, controls_cnn (3 ETECRM seeds), data_size (seeds 0-1, ROIs V1 V4 LO).
# DEADLINE=S (seconds from the start) stops a job that would run past it (exit 124 in its .done).
# Afterwards, on any machine: unpack into data/results/ and `etecrm table --out data/results`.
set -uo pipefail
mode=${1:?usage: tools/full_run.sh run WORK JOB... | pack WORK DEST}
work=${2:?usage: tools/full_run.sh run WORK JOB... | pack WORK DEST}
shift 2
py=${PYTHON:-python3}
profile=${PROFILE:-full}   # PROFILE=quick SEEDS=2 tries the whole script on a CPU
seeds=${SEEDS:-5}
deadline=${DEADLINE:-100000}
trainer=${TRAINER:---batched}   # TRAINER= (empty) trains the models one by one on CUDA streams
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$work"
start_all=$(date +%s)

job() {  # job NAME COMMAND...: run it (at most until the deadline), log it, record status and seconds
    local name=$1 start left
    shift
    start=$(date +%s)
    left=$((deadline - (start - start_all)))
    if [ "$left" -le 0 ]; then
        echo "124 0" >"$work/$name.done"
        return
    fi
    timeout "$left" bash -c '"$@"' job "$@" >"$work/$name.log" 2>&1
    echo "$? $(($(date +%s) - start))" >"$work/$name.done"
}

variants="etecrm etecrm_unweighted etecrm_no_noise etecrm_signed etecrm_mse gwp_ridge gwp_roiwise"
reproduce() {  # reproduce SUBJECT SEEDS MODELS...
    local subject=$1 n=$2
    shift 2
    $py -m etecrm_lib.cli reproduce --dataset sim --profile "$profile" --subject "$subject" --seeds "$n" \
        --simulation-seed 0 --models "$@" --out "$work/results" --no-figures --quiet $trainer
}
controls() {  # controls GROUND_TRUTH
    $py -m etecrm_lib.cli controls --ground-truth "$1" --profile "$profile" \
        --seeds "$((seeds < 3 ? seeds : 3))" --out "$work/controls" --quiet $trainer
}

export -f reproduce controls
export py profile seeds trainer work
if [ "$mode" = run ]; then
    [ $# -gt 0 ] || { echo "name the jobs: sub1 sub2 alexnet controls_gabor controls_cnn data_size" >&2; exit 2; }
    for name in "$@"; do
        case $name in
        sub1) job sub1 reproduce 1 "$seeds" $variants ;;
        sub2) job sub2 reproduce 2 "$seeds" $variants ;;
        # AlexNet features are untrained here (no internet): a reference with one seed, not a baseline
        alexnet) job alexnet reproduce 1 1 alexnet_ridge ;;
        controls_gabor) job controls_gabor controls gabor ;;
        controls_cnn) job controls_cnn controls cnn ;;
        data_size) job data_size $py -m etecrm_lib.cli datasize --profile "$profile" --seeds 2 \
            --rois V1 V4 LO --out "$work/data_size" --quiet $trainer ;;
        *) echo "unknown job $name" >&2; exit 2 ;;
        esac
    done
elif [ "$mode" = pack ]; then
    dest=${1:?pack needs DEST}
    rm -rf "$work/pack" && mkdir -p "$work/pack"
    for part in ${PARTS:-results controls data_size}; do
        [ -d "$work/$part" ] && cp -r "$work/$part" "$work/pack/"
    done
    cp "$work"/*.done "$work"/*.log "$work/pack/" 2>/dev/null
    [ -d "$work/pack/results" ] && $py -m etecrm_lib.cli table --strip-predictions --no-figures --out "$work/pack/results"
    rm -rf "$work/pack"/data_size/results "$work/pack"/controls/results  # curves.json and the control tables hold what the book shows
    tar czf - -C "$work/pack" . | split -b 15m - "$dest/full_results.tgz.part-"
    ls -la "$dest"
else
    echo "unknown mode $mode" >&2
    exit 2
fi
