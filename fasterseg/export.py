"""ONNX export of a trained network, verified against PyTorch with ONNX Runtime.

:func:`export_onnx` loads a ``train``/``distill`` checkpoint, prepares the network for inference
(batch norm folded into the convolutions, auxiliary heads dropped), traces it to ONNX (input
``image`` (N, 3, H, W) float32, output ``logits`` (N, num_classes, H, W)), checks the graph
with ``onnx.checker``, runs it in ONNX Runtime on the CPU execution provider beside the
PyTorch model on a seeded random input, and only then writes the file atomically: a file at
the output path has passed the check, and a failed export leaves any previous file untouched.
Optionally it times both (batch 1, end to end, the same thread count).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from .arch import OUTPUT_STRIDE, side_problem
from .engine.train import load_trained_model
from .errors import ConfigError, UserError
from .io import atomic_write
from .latency.measure import (
    import_onnxruntime,
    measure_network,
    measure_onnx,
    onnxruntime_session,
    resolve_threads,
    trace_to_onnx,
)
from .models.deploy import prepare_for_inference

log = logging.getLogger(__name__)

#: Largest relative difference of logits (max |onnx - torch| / (max - min of torch logits)).
MAX_RELATIVE_DIFF = 1e-4
#: Smallest fraction of pixels whose argmax class must agree.
MIN_ARGMAX_AGREEMENT = 0.999
#: Opset 11 is the first whose Resize has align_corners; 20 is the newest the TorchScript
#: exporter writes (the dynamo exporter would need the extra onnxscript package).
MIN_OPSET, MAX_OPSET = 11, 20
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class ExportError(UserError, RuntimeError):
    """An export that cannot run (a missing package) or whose ONNX model fails verification."""


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ExportError(
            "ONNX export needs the onnx package: pip install onnx "
            "(or pip install fasterseg[export])"
        ) from None
    return onnx


def _check_size(name: str, value: int) -> int:
    problem = side_problem(value)
    if problem:
        raise ConfigError(f"export {name} {problem}")
    return value


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _ort_errors(ort: Any) -> tuple[type[BaseException], ...]:
    """The exception classes ONNX Runtime raises when a graph fails to run."""
    state = ort.capi.onnxruntime_pybind11_state
    names = ("Fail", "InvalidArgument", "RuntimeException", "InvalidGraph", "NotImplemented")
    return tuple(getattr(state, n) for n in names if hasattr(state, n))


def compare_logits(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Agreement of two logit arrays (N, C, H, W): ``max_abs_diff``, ``relative_diff`` (the
    maximum absolute difference over the max-min range of ``reference``) and
    ``argmax_agreement`` (fraction of the N*H*W pixels whose argmax class is the same)."""
    if reference.shape != candidate.shape:
        raise ExportError(
            f"ONNX Runtime logits have shape {candidate.shape}, PyTorch's {reference.shape}"
        )
    ref = reference.astype(np.float64)
    max_abs = float(np.max(np.abs(ref - candidate.astype(np.float64))))
    span = float(ref.max() - ref.min())
    if span > 0:
        relative = max_abs / span
    else:
        relative = 0.0 if max_abs == 0 else float("inf")
    agreement = float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))
    return {"max_abs_diff": max_abs, "relative_diff": relative, "argmax_agreement": agreement}


def _verification_shapes(height: int, width: int, dynamic: bool) -> list[tuple[int, int, int]]:
    """(N, H, W) inputs to verify on: the export size, and for a dynamic export a second batch
    size and image size (half, or one step of 32 larger where half could not enter the
    network)."""
    shapes = [(1, height, width)]
    if dynamic:
        h, w = height // 2, width // 2
        if side_problem(h) or side_problem(w):
            h, w = height + OUTPUT_STRIDE, width + OUTPUT_STRIDE
        shapes.append((2, h, w))
    return shapes


def _verify(
    ort: Any, model: bytes, net: nn.Module, shapes: list[tuple[int, int, int]], threads: int
) -> dict[str, float]:
    """Run ``model`` in ONNX Runtime and ``net`` in PyTorch on seeded random inputs of each
    shape; return the worst figures over them. Raises ExportError when a check fails."""
    failures = _ort_errors(ort)
    try:
        session = onnxruntime_session(model, threads)
    except failures as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported model ({exc})") from exc
    gen = torch.Generator().manual_seed(0)
    worst = {"max_abs_diff": 0.0, "relative_diff": 0.0, "argmax_agreement": 1.0}
    for n, h, w in shapes:
        x = torch.randn(n, 3, h, w, generator=gen)
        with torch.inference_mode(), _torch_threads(threads):
            reference = net(x).numpy()
        try:
            (out,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
        except failures as exc:
            first = str(exc).strip().splitlines()[0]
            raise ExportError(
                f"the ONNX model fails in ONNX Runtime on a {n}x3x{h}x{w} input ({first})"
            ) from exc
        figures = compare_logits(reference, out)
        log.debug(
            "verified %dx3x%dx%d: max |diff| %.3g (%.3g of the logit range), argmax agreement %.5f",
            n, h, w, figures["max_abs_diff"], figures["relative_diff"],
            figures["argmax_agreement"],
        )  # fmt: skip
        if (
            figures["relative_diff"] >= MAX_RELATIVE_DIFF
            or figures["argmax_agreement"] < MIN_ARGMAX_AGREEMENT
        ):
            raise ExportError(
                f"ONNX Runtime disagrees with PyTorch on a {n}x3x{h}x{w} input: max |diff| "
                f"{figures['max_abs_diff']:.3g} = {figures['relative_diff']:.3g} of the logit "
                f"range (limit {MAX_RELATIVE_DIFF:g}), argmax agreement "
                f"{figures['argmax_agreement']:.5f} (need >= {MIN_ARGMAX_AGREEMENT})"
            )
        worst["max_abs_diff"] = max(worst["max_abs_diff"], figures["max_abs_diff"])
        worst["relative_diff"] = max(worst["relative_diff"], figures["relative_diff"])
        worst["argmax_agreement"] = min(worst["argmax_agreement"], figures["argmax_agreement"])
    return worst


def export_onnx(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike,
    *,
    height: int = 1024,
    width: int = 2048,
    dynamic: bool = False,
    opset: int = 17,
    verify: bool = True,
    threads: int | None = None,
    min_time: float = 1.0,
    measure: bool = True,
) -> dict[str, Any]:
    """Export the network of a ``train``/``distill`` checkpoint to ONNX at ``out``.

    The model maps ``image`` (1, 3, height, width) float32 to ``logits`` (1, num_classes,
    height, width); with ``dynamic`` the batch, height and width axes are free (verified on a
    second batch and image size). Batch norm is folded and the auxiliary heads are dropped.
    ``verify`` runs the model in ONNX Runtime (CPU, ``threads`` intra-op threads) and PyTorch
    on a seeded random input: the maximum absolute logit difference must stay below
    :data:`MAX_RELATIVE_DIFF` of the PyTorch logits' range and the argmax must agree on at
    least :data:`MIN_ARGMAX_AGREEMENT` of the pixels, else ExportError (with the figures)
    and nothing is written. ``measure`` times PyTorch eager and ONNX Runtime on one image
    (median over ``min_time`` seconds each, ``threads`` threads, default torch's count).

    Returns ``{"onnx", "height", "width", "dynamic", "opset", "max_abs_diff",
    "relative_diff", "argmax_agreement", "verified_shapes", "latency_ms_torch",
    "latency_ms_onnxruntime", "speedup", "threads", "num_classes", "architecture"}``; the
    verification figures are None without ``verify``, the latencies without ``measure``.
    Raises ConfigError for a size that is not a positive multiple of 32 or a bad opset or
    thread count, the checkpoint's error for an unreadable checkpoint.
    """
    _check_size("height", height)
    _check_size("width", width)
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(
            f"export opset must be an integer from {MIN_OPSET} to {MAX_OPSET}, got {opset!r}"
        )
    if min_time < 0:
        raise ConfigError(f"export min_time must be >= 0 seconds, got {min_time!r}")
    n_threads = resolve_threads(threads)
    onnx = _import_onnx()
    ort = (
        import_onnxruntime(
            "verifying and timing an ONNX export",
            hint="or pip install fasterseg[export]; verify=False and measure=False skip it",
            error=ExportError,
        )
        if verify or measure
        else None
    )

    model = load_trained_model(checkpoint, device="cpu")
    net = prepare_for_inference(model, channels_last=False)
    example = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    axes = {0: "batch", 2: "height", 3: "width"}
    with _torch_threads(n_threads):
        data = trace_to_onnx(
            net,
            example,
            opset=opset,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes} if dynamic else None,
        )
    try:
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX model fails onnx.checker ({exc})") from exc

    shapes = _verification_shapes(height, width, dynamic)
    figures: dict[str, Any] = dict.fromkeys(("max_abs_diff", "relative_diff", "argmax_agreement"))
    if verify:
        figures = _verify(ort, data, net, shapes, n_threads)
    path = atomic_write(out, lambda f: f.write(data))
    log.debug("wrote %s (%.1f MB, opset %d)", path, len(data) / 1e6, opset)

    latency_torch = latency_ort = speedup = None
    if measure:
        latency_torch = measure_network(
            net, height, width, backend="torch", threads=n_threads, min_time=min_time
        ).ms
        latency_ort = measure_onnx(data, example, threads=n_threads, min_time=min_time).ms
        speedup = latency_torch / latency_ort
    return {
        "onnx": str(out),
        "height": height,
        "width": width,
        "dynamic": dynamic,
        "opset": opset,
        **figures,
        "verified_shapes": [[n, 3, h, w] for n, h, w in shapes] if verify else [],
        "latency_ms_torch": latency_torch,
        "latency_ms_onnxruntime": latency_ort,
        "speedup": speedup,
        "threads": n_threads,
        "num_classes": model.num_classes,
        "architecture": model.genotype.name,
    }


def format_export_result(result: dict[str, Any]) -> str:
    """A few human-readable lines describing an :func:`export_onnx` result."""
    axes = "dynamic batch/height/width" if result["dynamic"] else "fixed size"
    lines = [
        f"exported {result['architecture']} ({result['num_classes']} classes) to "
        f"{result['onnx']}: input 1x3x{result['height']}x{result['width']}, {axes}, "
        f"opset {result['opset']}"
    ]
    if result["max_abs_diff"] is None:
        lines.append("ONNX Runtime check: skipped")
    else:
        inputs = ", ".join("x".join(map(str, s)) for s in result["verified_shapes"])
        lines.append(
            f"ONNX Runtime check passed on {inputs}: max |diff| {result['max_abs_diff']:.3g} "
            f"({result['relative_diff']:.2g} of the logit range, limit {MAX_RELATIVE_DIFF:g}), "
            f"argmax agreement {100 * result['argmax_agreement']:.4f}%"
        )
    if result["latency_ms_torch"] is not None:
        lines.append(
            f"latency at batch 1, {result['threads']} thread(s): PyTorch eager "
            f"{result['latency_ms_torch']:.2f} ms, ONNX Runtime "
            f"{result['latency_ms_onnxruntime']:.2f} ms ({result['speedup']:.2f}x)"
        )
    return "\n".join(lines)
