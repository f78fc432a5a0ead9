"""Per-patch CPU latency and agreement of the deployment backends (issue 11, step 5's measurement).

Builds autounet U-Nets of realistic size (3D: 64x96x96 patch, 6 stages, 32..320 features; 2D: 256x256 patch,
7 stages, 32..512 features) with random weights, exports them to ONNX, quantizes them to INT8 with ONNX
Runtime's static QDQ per-channel quantization and with OpenVINO+NNCF post-training quantization, and prints
seconds per patch (median of ``--repeats``) and the share of voxels whose argmax agrees with torch fp32 on
held-out patches. Calibration and test patches are smooth random volumes (no trained model is involved:
agreement here checks the quantization's numerics, not Dice).

    PYTHONPATH=src python benchmarks/deploy_patch.py --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from cpu_step_variants import cpu_description
from torch.nn import functional

from autounet.deploy.onnx_export import export_onnx
from autounet.deploy.quantize import quantize_int8
from autounet.deploy.runtime import OrtPatchModel
from autounet.networks.spec import UNetSpec
from autounet.networks.unet import build_network

NETWORKS = {
    "3d": (UNetSpec(3, "plain", (32, 64, 128, 256, 320, 320), ((3, 3, 3),) * 6,
                    ((1, 1, 1), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2)), (2,) * 6, (2,) * 5),
           (64, 96, 96)),
    "2d": (UNetSpec(2, "plain", (32, 64, 128, 256, 512, 512, 512), ((3, 3),) * 7,
                    ((1, 1),) + ((2, 2),) * 6, (2,) * 7, (2,) * 6), (256, 256)),
}


def smooth_patches(count: int, channels: int, patch: tuple[int, ...], seed: int) -> np.ndarray:
    """Random volumes smoothed by pooling: image-like spatial correlation, zero mean, unit-ish variance."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((count, channels, *patch), generator=generator)
    pool = functional.avg_pool3d if len(patch) == 3 else functional.avg_pool2d
    smooth = pool(noise, 5, stride=1, padding=2)
    return (smooth / smooth.std()).numpy().astype(np.float32)


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: kernel selection, memory pools
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def openvino_model(path: Path, shape: tuple[int, ...], threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): list(shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
    return lambda array: compiled(array)[0]


def nncf_quantize_openvino(onnx_path: Path, calibration: np.ndarray, out: Path) -> Path:
    import nncf
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    dataset = nncf.Dataset([calibration[i:i + 1] for i in range(len(calibration))])
    quantized = nncf.quantize(model, dataset, subset_size=len(calibration))
    ov.save_model(quantized, str(out))
    return out


def bench(name: str, threads: int, repeats: int, calibration_count: int, folder: Path) -> list[str]:
    spec, patch = NETWORKS[name]
    torch.manual_seed(0)
    network = build_network(spec, 1, 3, deep_supervision=False).eval()
    onnx_path = export_onnx(network, (1, 1, *patch), spec.total_downsampling(), folder / f"{name}.onnx", dynamo=False)
    calibration = smooth_patches(calibration_count, 1, patch, seed=1)
    test = smooth_patches(2, 1, patch, seed=2)
    rows = []
    with torch.no_grad():
        reference = [network(torch.from_numpy(t[None])).argmax(1).numpy() for t in test]
    sample = torch.from_numpy(test[:1])

    def report(label: str, run: Callable[[np.ndarray], np.ndarray], seconds: float, size: Path | None) -> None:
        agree = np.mean([(np.asarray(run(t[None])).argmax(1) == r).mean() for t, r in zip(test, reference,
                                                                                         strict=True)])
        megabytes = sum(p.stat().st_size for p in ([size, size.with_suffix(".bin")] if size else [])
                        if p.exists()) / 2**20
        rows.append(f"{name:3} {label:28} {seconds:8.3f} s/patch  argmax agreement {agree * 100:7.3f}%  "
                    f"{megabytes:7.1f} MB")
        print(rows[-1], flush=True)

    torch.set_num_threads(threads)
    with torch.no_grad():
        report("torch fp32", lambda a: network(torch.from_numpy(a)).numpy(),
               median_seconds(lambda: network(sample), repeats), onnx_path)
        if torch.backends.mkldnn.is_available() and "amx_bf16=yes" in cpu_description():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                report("torch bf16 autocast", lambda a: network(torch.from_numpy(a)).float().numpy(),
                       median_seconds(lambda: network(sample), repeats), None)
    ort_fp32 = OrtPatchModel(onnx_path, 1, 3, len(patch), threads=threads)
    report("onnxruntime fp32", lambda a: ort_fp32(torch.from_numpy(a)).numpy(),
           median_seconds(lambda: ort_fp32(sample), repeats), onnx_path)
    ov_fp32 = openvino_model(onnx_path, sample.shape, threads)
    report("openvino fp32", ov_fp32, median_seconds(lambda: ov_fp32(test[:1]), repeats), onnx_path)
    for method in ("onnxruntime", "nncf"):
        start = time.perf_counter()
        int8_path = quantize_int8(onnx_path, calibration, folder / f"{name}_{method}.onnx", method=method)
        print(f"    quantization with {method}: {time.perf_counter() - start:.1f} s", flush=True)
        ort_int8 = OrtPatchModel(int8_path, 1, 3, len(patch), threads=threads)
        report(f"int8 {method} QDQ on onnxruntime", lambda a, m=ort_int8: m(torch.from_numpy(a)).numpy(),
               median_seconds(lambda m=ort_int8: m(sample), repeats), int8_path)
        ov_int8 = openvino_model(int8_path, sample.shape, threads)
        report(f"int8 {method} QDQ on openvino", ov_int8, median_seconds(lambda m=ov_int8: m(test[:1]), repeats),
               int8_path)
    return rows


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calibration", type=int, default=16, help="calibration patches")
    parser.add_argument("--networks", nargs="+", default=["3d", "2d"], choices=sorted(NETWORKS))
    args = parser.parse_args()
    print(cpu_description(), f"; torch {torch.__version__}; threads {args.threads}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        for name in args.networks:
            bench(name, args.threads, args.repeats, args.calibration, Path(folder))


if __name__ == "__main__":
    main()
