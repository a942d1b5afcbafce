#!/usr/bin/env bash
# The main job: train a class-conditional latent DiT on the digits end to end (VAE, latent cache, DiT, guided sampling,
# evaluation) and write samples.png, trajectory.png, trajectory.gif and metrics.json to a folder (default out/demo).
# Running it again skips the stages that are done. Arguments after the folder are config overrides, e.g. train.max_steps=500.
source "$(dirname "$0")/env.sh"
export MPLBACKEND=Agg HF_HUB_OFFLINE=1
# The models are small: one BLAS/OpenMP thread per process beats several fighting over a shared CPU.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
out="${1:-out/demo}"; shift || true
flowmatch demo "$out" "$@"
