#!/usr/bin/env bash
# One command on a fresh machine: install autounet into .venv and run the main job on the example data.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/autounet ]; then
    "$PYTHON" -m venv .venv
    # torch first and pinned: the CPU wheel; an unpinned torch would pull GBs of CUDA packages.
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e ".[test]"
fi
export AUTOUNET_DATA=${AUTOUNET_DATA:-$PWD/autounet_data}
run() { echo "+ autounet $*"; .venv/bin/autounet "$@"; }

run example mr ct multichannel png2d              # ids 501-504 under $AUTOUNET_DATA/raw
run verify -d 501
run plan-and-preprocess -d 501                   # verify, fingerprint, plan, preprocess (resumable)
run plan-and-preprocess -d 504
# A deliberately tiny training budget, to show the whole loop on a CPU in about a minute.
if [ ! -f "$AUTOUNET_DATA/results/Dataset504_ExamplePNG/2d/fold_0/checkpoint_final.pt" ]; then
    run train -d 504 -c 2d -f 0 --epochs 2 --iterations-per-epoch 5
fi
PREDICTIONS="$AUTOUNET_DATA/predictions/Dataset504_ExamplePNG"
run predict -i "$AUTOUNET_DATA/raw/Dataset504_ExamplePNG/imagesTs" -o "$PREDICTIONS" -d 504 -c 2d -f 0
run evaluate "$AUTOUNET_DATA/raw/Dataset504_ExamplePNG/labelsTs" "$PREDICTIONS"   # writes summary.json, metrics.csv
echo
echo "Done. Look at:"
echo "  $AUTOUNET_DATA/raw/Dataset501_ExampleMR/                 the example dataset (nnU-Net v2 layout)"
echo "  $AUTOUNET_DATA/preprocessed/Dataset501_ExampleMR/plans.json   the planned configurations"
echo "  $AUTOUNET_DATA/preprocessed/Dataset501_ExampleMR/fingerprint.json"
echo "  $AUTOUNET_DATA/results/Dataset504_ExamplePNG/2d/fold_0/progress.png   training curves"
echo "  $AUTOUNET_DATA/results/Dataset504_ExamplePNG/2d/fold_0/validation/summary.json   Dice per class"
echo "  $PREDICTIONS/   predictions for the test images, in the input's format and geometry"
echo "  $PREDICTIONS/summary.json, metrics.csv   Dice, IoU, precision, recall, HD95, surface Dice per case and label"
