#!/usr/bin/env bash
# The main job: train a model end to end on this machine and write pictures and numbers to a folder.
source "$(dirname "$0")/env.sh"
export MPLBACKEND=Agg
python -m flowmatch.demo "${@:-out/demo}"
