#!/usr/bin/env bash
# One command on a fresh machine: install autounet into .venv and run the main job end to end on the example data:
# example -> plan-and-preprocess -> train 2d and 3d_fullres on folds 0 and 1 (tiny budget) -> find-best ->
# predict the test images with the chosen setup -> evaluate against their labels -> deploy 3d_fullres as INT8
# ONNX and predict + evaluate with it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    # torch first and pinned: the CPU wheel; an unpinned torch would pull GBs of CUDA packages.
    .venv/bin/pip install -q torch==2.13.0
fi
if ! .venv/bin/python -c "import autounet, onnx, openvino, pycocotools" 2>/dev/null; then
    echo "torch==2.13.0" > .venv/constraints.txt   # the extras must not pull another torch
    .venv/bin/pip install -q -e ".[test,deploy]" -c .venv/constraints.txt
fi
export AUTOUNET_DATA=${AUTOUNET_DATA:-$PWD/autounet_data}
export PATH="$PWD/.venv/bin:$PATH"
run() { echo "+ autounet $*"; autounet "$@"; }

DATASET=Dataset501_ExampleMR
RAW="$AUTOUNET_DATA/raw/$DATASET"
RESULTS="$AUTOUNET_DATA/results/$DATASET"
PREDICTIONS="$AUTOUNET_DATA/predictions/$DATASET"

run example mr ct multichannel png2d              # ids 501-504 under $AUTOUNET_DATA/raw
run verify -d 501
run plan-and-preprocess -d 501                   # verify, fingerprint, plan, preprocess (resumable)
# A deliberately tiny budget, to show the whole loop on a CPU in a few minutes (real runs: 1000 x 250).
for configuration in 2d 3d_fullres; do
    for fold in 0 1; do
        if [ ! -f "$RESULTS/$configuration/fold_$fold/validation/summary.json" ]; then
            rm -rf "$RESULTS/$configuration/fold_$fold"       # an unfinished tiny run: start it again
            run train -d 501 -c "$configuration" -f "$fold" --epochs 2 --iterations-per-epoch 5 --save-probabilities
        fi
    done
done
run find-best -d 501 -f 0 1                       # cross-validation of each configuration and their ensemble
# find-best wrote the exact commands for new images; run them on the test images.
sed -e "s#INPUT#$RAW/imagesTs#g" -e "s#OUTPUT#$PREDICTIONS#g" "$RESULTS/find_best/predict_commands.txt" > \
    "$AUTOUNET_DATA/predict_commands.sh"
echo "+ bash $AUTOUNET_DATA/predict_commands.sh"
cat "$AUTOUNET_DATA/predict_commands.sh"
bash -euo pipefail "$AUTOUNET_DATA/predict_commands.sh"
# The last command's -o folder holds the final (ensembled, postprocessed) segmentations.
FINAL=$(tail -n 1 "$AUTOUNET_DATA/predict_commands.sh" | sed -E 's#.* -o ([^ ]+).*#\1#')
run evaluate "$RAW/labelsTs" "$FINAL"              # writes summary.json, metrics.csv
# Deployment: the 3d_fullres folds as INT8 ONNX graphs (calibrated on training patches), predicted on the CPU
# through the same pipeline and scored the same way, to compare with the torch model's Dice above.
DEPLOYED="$AUTOUNET_DATA/deployed/${DATASET}_3d_fullres_int8"
# INT8 with the accuracy check on each fold's validation cases (mirroring off to keep the demo short); a model
# this briefly trained may fail the check, which is a refusal with its report kept, not a demo failure.
if [ -f "$DEPLOYED/deploy.json" ] || run deploy -d 501 -c 3d_fullres -f 0 1 --precision int8 -o "$DEPLOYED" \
        --check-disable-tta; then
    run predict -i "$RAW/imagesTs" -o "$AUTOUNET_DATA/predictions/${DATASET}_int8" -m "$DEPLOYED"
    run evaluate "$RAW/labelsTs" "$AUTOUNET_DATA/predictions/${DATASET}_int8"
fi

# Multi-task: a synthetic SAR glacier dataset with two label maps (zones, calving front), late branching.
SAR="$AUTOUNET_DATA/raw/Dataset506_ExampleSAR"
[ -f "$SAR/dataset.json" ] || run example sar   # a rerun keeps the finished dataset
run plan-and-preprocess -d 506
[ -f "$AUTOUNET_DATA/results/Dataset506_ExampleSAR/2d/fold_0/validation/summary.json" ] || \
    run train -d 506 -c 2d -f 0 --epochs 2 --iterations-per-epoch 5
run predict -d 506 -c 2d -f 0 -i "$SAR/imagesTs" -o "$AUTOUNET_DATA/predictions/Dataset506_ExampleSAR"
run evaluate "$SAR/labelsTs" "$AUTOUNET_DATA/predictions/Dataset506_ExampleSAR" -j "$SAR/dataset.json"

# Detection: nnDetection's toy problem, Retina U-Net on the planned 3d_det configuration, boxes as JSON.
TOY="$AUTOUNET_DATA/raw/Dataset505_ExampleDetection"
[ -f "$TOY/dataset.json" ] || run example detection
run plan-and-preprocess -d 505
[ -f "$AUTOUNET_DATA/results/Dataset505_ExampleDetection/3d_det__detection__plans/fold_0/validation/summary.json" ] || \
    run train -d 505 -c 3d_det -f 0 --recipe detection --epochs 2 --iterations-per-epoch 5
run predict -d 505 -c 3d_det -f 0 -i "$TOY/imagesTs" -o "$AUTOUNET_DATA/predictions/Dataset505_ExampleDetection" \
    --save-box-map
run evaluate "$TOY/labelsTs" "$AUTOUNET_DATA/predictions/Dataset505_ExampleDetection"
echo
echo "Done. Look at:"
echo "  $RAW/   the example dataset (nnU-Net v2 layout)"
echo "  $AUTOUNET_DATA/preprocessed/$DATASET/plans.json   the planned configurations"
echo "  $RESULTS/3d_fullres/fold_0/progress.png   training curves"
echo "  $RESULTS/find_best/summary.json   cross-validation Dice of each configuration and ensemble"
echo "  $RESULTS/find_best/choice.json, postprocessing.json, predict_commands.txt   the chosen setup"
echo "  $FINAL/   predictions for the test images, in the input's format and geometry"
echo "  $FINAL/summary.json, metrics.csv   Dice, IoU, precision, recall, HD95, surface Dice per case and label"
echo "  $DEPLOYED/   the 3d_fullres model as INT8 ONNX graphs (deploy.json: what it holds, with hashes;"
echo "      deploy_report.json: Dice float vs INT8 per fold and class, what stayed float, latency)"
echo "  $AUTOUNET_DATA/predictions/Dataset506_ExampleSAR/{zones,front}/   both label maps of each test image"
echo "  $AUTOUNET_DATA/predictions/Dataset505_ExampleDetection/*_boxes.json   detected boxes (voxel and world)"
echo "  $AUTOUNET_DATA/predictions/Dataset505_ExampleDetection/*_boxes.nii.gz  the boxes scoring >= 0.5 as a label map"
