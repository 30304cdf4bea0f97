#!/usr/bin/env bash
# The full-profile runs behind data/results/, on one GPU (data/results/README.md gives the times).
#
#   tools/full_run.sh run  WORK        run every job in order; WORK/<job>.log and WORK/<job>.done ("exit seconds")
#   tools/full_run.sh pack WORK DEST   copy what is finished, strip the test predictions (etecrm table
#                                      --strip-predictions) and write DEST/full_results.tgz
#
# Here: one H200. Subject 1 runs alone first (its wall time is the "one subject, timed alone" figure);
# then three chains side by side (each trains its seeds side by side on CUDA streams).
# Afterwards, on any machine: unpack into data/results/ and `etecrm table --out data/results`.
set -uo pipefail
mode=${1:?usage: tools/full_run.sh run WORK | pack WORK DEST}
work=${2:?usage: tools/full_run.sh run WORK | pack WORK DEST}
py=${PYTHON:-python3}
profile=${PROFILE:-full}   # PROFILE=quick SEEDS=2 tries the whole script on a CPU
seeds=${SEEDS:-5}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$work"

job() {  # job NAME COMMAND...: run it, log it, record exit status and seconds
    local name=$1 start
    shift
    start=$(date +%s)
    "$@" >"$work/$name.log" 2>&1
    echo "$? $(($(date +%s) - start))" >"$work/$name.done"
}

etecrm_variants="etecrm etecrm_unweighted etecrm_no_noise etecrm_signed etecrm_mse gwp_ridge gwp_roiwise"
reproduce() {  # reproduce SUBJECT SEEDS MODELS...
    local subject=$1 seeds=$2
    shift 2
    $py -m etecrm_lib.cli reproduce --dataset sim --profile "$profile" --subject "$subject" --seeds "$seeds" \
        --simulation-seed 0 --models "$@" --out "$work/results" --no-figures --quiet
}

chain_a() {
    job sub2 reproduce 2 "$seeds" $etecrm_variants
}
chain_b() {
    # AlexNet features are untrained here (no internet): a reference with one seed, not a candidate baseline
    job sub1_alexnet reproduce 1 1 alexnet_ridge
    for truth in gabor cnn; do
        job "controls_${truth}" $py -m etecrm_lib.cli controls --ground-truth "$truth" --profile "$profile" \
            --seeds "$((seeds < 3 ? seeds : 3))" --out "$work/controls" --quiet
    done
}
chain_c() {
    job data_size $py -m etecrm_lib.cli datasize --profile "$profile" --seeds 2 --rois V1 V4 LO --out "$work/data_size" --quiet
}

if [ "$mode" = run ]; then
    # every ETECRM variant and the Gabor models with 5 model seeds (gwp_ridge is deterministic: once), alone
    job sub1 reproduce 1 "$seeds" $etecrm_variants
    chain_a &
    chain_b &
    chain_c &
    wait
elif [ "$mode" = pack ]; then
    dest=${3:?pack needs DEST}
    rm -rf "$work/pack" && mkdir -p "$work/pack"
    for part in ${PARTS:-results controls data_size}; do
        [ -d "$work/$part" ] && cp -r "$work/$part" "$work/pack/"
    done
    cp "$work"/*.done "$work/pack/" 2>/dev/null
    [ -d "$work/pack/results" ] && $py -m etecrm_lib.cli table --strip-predictions --no-figures --out "$work/pack/results"
    rm -f "$work/pack"/data_size/*/*.npz   # learning curves (curves.json) hold what the book shows
    tar czf - -C "$work/pack" . | split -b 15m - "$dest/full_results.tgz.part-"
    ls -la "$dest"
else
    echo "unknown mode $mode" >&2
    exit 2
fi
