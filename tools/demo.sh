#!/usr/bin/env bash
# The main job: train flows on a 2-D toy (independent vs minibatch-OT coupling) and write trajectories.png and
# metrics.json (W2 to held-out data per NFE, straightness) to a folder (default out/demo).
source "$(dirname "$0")/env.sh"
export MPLBACKEND=Agg HF_HUB_OFFLINE=1
# small models: one BLAS/OpenMP thread beats several fighting over a shared CPU
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
python -c 'import sys; from flowmatch.toy import demo; demo(sys.argv[1])' "${1:-out/demo}"
