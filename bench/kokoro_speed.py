"""What Kokoro-82M costs per second of speech, for ways of running it, side by side in one run.

Every configuration speaks the same Spanish sentences (bench/intelligibility.py's) through
`kokoro_lib.synthesize_file`, exactly as a pool worker does (phonemes, model, trim, resampling to 48 kHz,
levels, WAV); the calls are interleaved (sentence by sentence, every configuration in turn, twice), so the
machine's load, which moves over minutes on this shared 2-core box, weighs on all of them alike. The figure
is CPU-seconds (process CPU time, all threads) per second of speech: wall time on a loaded machine says
little. Each configuration's clips are compared with the shipped one's (same length, largest sample
difference when the lengths agree; the trimmed clips of a rewritten model differ by a few ms) so a
faster way that changes the voice shows.

Configurations: the shipped int8 model with the service's session (`kokoro_lib._load`: one thread), and with
other session settings (graph optimisation levels, denormals flushed, no memory arena, two threads); and the
model rewritten (`--rewrites`): every int8 convolution dequantized to an fp32 Conv (`fp32-conv`), that plus
the int8 MatMuls and LSTMs (`fp32-all`), or the convolutions as in-graph im2col + DynamicQuantizeMatMul
(`im2col-gemm`, int8 weights shifted to signed: exact, as the weights are 7-bit). The rewrites need the
`onnx` package (installed here through the lock, not a service dependency).

    .venv/bin/python bench/kokoro_speed.py [--sentences 6] [--rewrites] [--profile]

`--profile` prints onnxruntime's own per-operator share of the shipped model's time (session profiling).
Prints figures and saves bench/results/kokoro_speed.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from _lib import ROOT, machine
from _lib.results import write_results

from bench.intelligibility import SENTENCES
from service.engines.offline import espeak, kokoro, kokoro_lib

DATA_DIR = ROOT / ".dubbing"
RATE = 48000  # the service's clips


def session(model_path: str, threads: int = 1, level: str = "all", config: dict[str, str] | None = None,
            arena: bool = True, profile: str = "") -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = {
        "disable": onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    options.enable_cpu_mem_arena = arena
    options.enable_mem_pattern = arena
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    if profile:
        options.enable_profiling = True
        options.profile_file_prefix = profile
    return onnxruntime.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])


# -- model rewrites (bench only: the shipped model is what the service runs) --------------------------------


def _graph(path: str) -> tuple[Any, dict[str, Any], dict[str, Any], dict[str, list[Any]]]:
    import onnx

    model = onnx.load(path)
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
    return model, inits, producer, consumers


def _quantized_chain(node: Any, producer: dict[str, Any], consumers: dict[str, list[Any]],
                     inits: dict[str, Any]) -> tuple[str, str | None, Any, list[Any], str]:
    """onnxruntime's dynamic quantization around an integer op: DynamicQuantizeLinear(x) -> op -> [Add of the
    bias, quantized at run time] -> Cast -> Mul(x_scale * w_scale). Returns x, the float bias, the final Mul,
    the nodes the rewrite replaces and the weight scale's initializer."""
    x = producer[node.input[0]].input[0]
    bias, current = None, node
    after = consumers[current.output[0]][0]
    if after.op_type == "Add":  # bias: Reshape <- Cast <- Floor <- Div(bias, x_scale * w_scale)
        bias = producer[producer[producer[producer[after.input[1]].input[0]].input[0]].input[0]].input[0]
        current = after
        after = consumers[current.output[0]][0]
    cast, mul = after, consumers[after.output[0]][0]
    assert cast.op_type == "Cast" and mul.op_type == "Mul", node.name
    scales = producer[mul.input[1]]
    w_scale = scales.input[1] if scales.input[1] in inits else scales.input[0]
    return x, bias, mul, [node, current, cast], w_scale


def _save_pruned(model: Any, replaced: dict[int, list[Any]], dropped: set[int], extra: list[Any], out: str) -> None:
    import onnx

    graph = model.graph
    nodes = [m for n in graph.node for m in (replaced.get(id(n), [n]) if id(n) not in dropped else [])]
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    initializers = [i for i in [*graph.initializer, *extra] if i.name in needed]
    del graph.node[:]
    graph.node.extend(reversed(kept))
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    onnx.save(model, out)


def fp32(src: str, out: str, ops: tuple[str, ...]) -> None:
    """ConvInteger / MatMulInteger / DynamicQuantizeLSTM replaced by fp32 Conv / MatMul / LSTM over the
    dequantized weights (the activations are then not quantized at all)."""
    from onnx import helper, numpy_helper

    model, inits, producer, consumers = _graph(src)
    value = lambda name: numpy_helper.to_array(inits[name]).astype(np.float32)  # noqa: E731
    extra: dict[str, Any] = {}
    replaced: dict[int, list[Any]] = {}
    dropped: set[int] = set()
    for node in model.graph.node:
        if node.op_type not in ops:
            continue
        if node.op_type == "DynamicQuantizeLSTM":  # its W and R are [directions, input, 4*hidden]
            ins = [*node.input, *[""] * (12 - len(node.input))]
            for q, s, z in ((ins[1], ins[8], ins[9]), (ins[2], ins[10], ins[11])):
                shape = (-1, 1, 1) if value(s).ndim == 1 else (value(s).shape[0], 1, -1)
                weights = (value(q) - value(z).reshape(shape)) * value(s).reshape(shape)
                extra[q] = numpy_helper.from_array(weights.transpose(0, 2, 1).copy(), q + "_fp32")
            lstm = helper.make_node("LSTM", [ins[0], ins[1] + "_fp32", ins[2] + "_fp32", *ins[3:8]],
                                    list(node.output), name=node.name + "_fp32")
            lstm.attribute.extend(node.attribute)
            replaced[id(node)] = [lstm]
            continue
        x, bias, mul, gone, w_scale = _quantized_chain(node, producer, consumers, inits)
        weights = value(node.input[1])
        zero = value(node.input[3])
        if node.op_type == "ConvInteger":
            shape = (-1, *[1] * (weights.ndim - 1)) if zero.ndim else ()
            dequantized = (weights - zero.reshape(shape)) * value(w_scale).reshape(shape if value(w_scale).ndim else ())
            new = helper.make_node("Conv", [x, node.input[1] + "_fp32", *([bias] if bias else [])], [mul.output[0]],
                                   name=node.name + "_fp32")
            new.attribute.extend(node.attribute)
        else:
            dequantized = (weights - zero) * value(w_scale)
            new = helper.make_node("MatMul", [x, node.input[1] + "_fp32"], [mul.output[0]], name=node.name + "_fp32")
        extra[node.input[1]] = numpy_helper.from_array(dequantized.astype(np.float32), node.input[1] + "_fp32")
        replaced[id(mul)] = [new]
        dropped.update(id(n) for n in gone)
    _save_pruned(model, replaced, dropped, list(extra.values()), out)


def im2col_gemm(src: str, out: str) -> None:
    """Each stride-1 ConvInteger as Transpose -> Pad -> K shifted Slices -> Concat -> DynamicQuantizeMatMul
    (u8 x s8, prepacked weights) -> Transpose. The weights are 7-bit (0..127), shifted by 64 to int8 exactly."""
    from onnx import helper, numpy_helper

    model, inits, producer, consumers = _graph(src)
    extra: list[Any] = []
    replaced: dict[int, list[Any]] = {}
    dropped: set[int] = set()

    def const(name: str, data: Any) -> str:
        extra.append(numpy_helper.from_array(np.asarray(data), name))
        return name

    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "ConvInteger" or attrs.get("group", 1) != 1 or set(attrs.get("strides", [1])) != {1}:
            continue
        x, bias, mul, gone, w_scale = _quantized_chain(node, producer, consumers, inits)
        weights = numpy_helper.to_array(inits[node.input[1]]).astype(np.int16)
        zero = numpy_helper.to_array(inits[node.input[3]]).astype(np.int16)
        channels_out, channels_in, k = weights.shape
        dilation, (before, after) = attrs.get("dilations", [1])[0], attrs.get("pads", [0, 0])
        base = node.name + "_gemm"
        b = const(base + "_B", (weights.transpose(2, 1, 0).reshape(k * channels_in, channels_out) - 64).astype(np.int8))
        z = const(base + "_zp", (zero - 64).astype(np.int8))
        steps = [helper.make_node("Transpose", [x], [base + "_xt"], perm=[0, 2, 1])]
        pads = const(base + "_pads", np.array([0, before, 0, 0, after, 0]))
        steps.append(helper.make_node("Pad", [base + "_xt", pads], [base + "_xp"]))
        span = dilation * (k - 1)
        slices = []
        for i in range(k):
            end = -(span - i * dilation) if span > i * dilation else np.iinfo(np.int64).max
            slices.append(f"{base}_s{i}")
            steps.append(helper.make_node("Slice", [base + "_xp", const(f"{base}_b{i}", np.array([i * dilation])),
                                                    const(f"{base}_e{i}", np.array([end])),
                                                    const(f"{base}_a{i}", np.array([1]))], [slices[-1]]))
        steps.append(helper.make_node("Concat", slices, [base + "_cols"], axis=2))
        gemm_inputs = [base + "_cols", b, w_scale, z, *([bias] if bias else [])]
        steps.append(helper.make_node("DynamicQuantizeMatMul", gemm_inputs, [base + "_y"], domain="com.microsoft"))
        steps.append(helper.make_node("Transpose", [base + "_y"], [mul.output[0]], perm=[0, 2, 1]))
        replaced[id(mul)] = steps
        dropped.update(id(n) for n in gone)
    _save_pruned(model, replaced, dropped, extra, out)


# -- measuring ------------------------------------------------------------------------------------------------


def configurations(shipped: str, service_session: Any, scratch: Path, rewrites: bool) -> dict[str, Callable[[], Any]]:
    configs: dict[str, Callable[[], Any]] = {
        "shipped (service)": lambda: service_session,  # kokoro_lib._load's own session
        "opt level basic": lambda: session(shipped, level="basic"),
        "opt level disable": lambda: session(shipped, level="disable"),
        "denormals as zero": lambda: session(shipped, config={"session.set_denormal_as_zero": "1"}),
        "no memory arena": lambda: session(shipped, arena=False),
        "2 threads": lambda: session(shipped, threads=2),
    }
    if rewrites:
        builders: dict[str, Callable[[str, str], None]] = {
            "fp32-conv": lambda src, out: fp32(src, out, ("ConvInteger",)),
            "fp32-all": lambda src, out: fp32(src, out, ("ConvInteger", "MatMulInteger", "DynamicQuantizeLSTM")),
            "im2col-gemm": im2col_gemm,
        }
        for name, build in builders.items():
            path = str(scratch / f"{name}.onnx")
            build(shipped, path)
            configs[f"rewrite {name}"] = lambda path=path: session(path)  # type: ignore[misc]
    return configs


def profile(shipped: str, model: Any, sentences: list[str], scratch: Path) -> dict[str, float]:
    """onnxruntime's per-operator share of the shipped model's kernel time."""
    profiled = session(shipped, profile=str(scratch / "profile"))
    for text in sentences:
        tokens = [model.vocab[s] for s in kokoro_lib.symbols(text, "es", "es", model.vocab) if s in model.vocab]
        profiled.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                            "style": model.styles["jm_kumo"][len(tokens) - 1].reshape(1, 256),
                            "speed": np.array([1.0], dtype=np.float32)})
    events = json.loads(Path(profiled.end_profiling()).read_text())
    by_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    return {op: round(us / total, 4) for op, us in by_op.most_common(12)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences", type=int, default=6, help="Spanish sentences (of 12)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rewrites", action="store_true", help="also the rewritten models (needs `onnx`)")
    parser.add_argument("--profile", action="store_true", help="per-operator profile of the shipped model")
    args = parser.parse_args()
    model_dir = kokoro.model_dir(DATA_DIR)
    shipped = str(Path(model_dir) / "kokoro.onnx")
    loaded = kokoro_lib._load(model_dir)
    sentences = SENTENCES["es"][: args.sentences]
    load_before = machine.load_average()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        folders = {}
        for name, make in configurations(shipped, loaded.session, scratch, args.rewrites).items():
            folder = scratch / name.replace(" ", "_")
            kokoro_lib._models[str(folder)] = kokoro_lib._Model(make(), loaded.vocab, loaded.styles)
            kokoro_lib.warm(str(folder))
            folders[name] = str(folder)
        cpu = dict.fromkeys(folders, 0.0)
        wall = dict.fromkeys(folders, 0.0)
        audio = dict.fromkeys(folders, 0.0)
        clips: dict[str, list[Any]] = {name: [] for name in folders}
        for round_ in range(args.rounds):
            for number, text in enumerate(sentences):
                for name, folder in folders.items():
                    out = str(scratch / f"{number}.wav")
                    start_cpu, start = time.process_time(), time.perf_counter()
                    audio[name] += kokoro_lib.synthesize_file(text, "es", espeak.VOICES.get("es", "es"), "jm_kumo",
                                                              1.0, RATE, out, folder)
                    cpu[name] += time.process_time() - start_cpu
                    wall[name] += time.perf_counter() - start
                    if round_ == 0:
                        clips[name].append(sf.read(out, dtype="float32")[0])
        profiled = profile(shipped, loaded, sentences[:3], scratch) if args.profile else {}
    reference = cpu["shipped (service)"] / audio["shipped (service)"]
    rows = {}
    print(f"{len(sentences)} Spanish sentences x {args.rounds} rounds, jm_kumo, 48 kHz clips; "
          f"load average {load_before}")
    for name in folders:
        pairs = list(zip(clips[name], clips["shipped (service)"], strict=True))
        same_length = all(a.shape == b.shape for a, b in pairs)
        largest = max(float(np.max(np.abs(a - b))) for a, b in pairs) if same_length else None
        length_ms = max(abs(a.size - b.size) for a, b in pairs) / RATE * 1000
        rows[name] = {"cpu_seconds_per_speech_second": round(cpu[name] / audio[name], 3),
                      "vs_shipped": round(cpu[name] / audio[name] / reference, 3),
                      "wall_seconds_per_speech_second": round(wall[name] / audio[name], 3),
                      "speech_seconds": round(audio[name], 1), "largest_length_difference_ms": round(length_ms, 1),
                      "largest_sample_difference": None if largest is None else round(largest, 4)}
        print(f"  {name:24s} CPU {rows[name]['cpu_seconds_per_speech_second']:.3f} s/s "
              f"({rows[name]['vs_shipped']:.2f}x shipped)  wall {rows[name]['wall_seconds_per_speech_second']:.3f} s/s"
              f"  clip lengths within {length_ms:.0f} ms, largest sample difference "
              f"{rows[name]['largest_sample_difference']} (None: lengths differ)")
    if profiled:
        print("shipped model, share of kernel time by operator:",
              ", ".join(f"{op} {share:.1%}" for op, share in profiled.items()))
    write_results("kokoro_speed", {"environment": machine.environment(), "load_average_before": load_before,
                                   "load_average_after": machine.load_average(), "sentences": len(sentences),
                                   "rounds": args.rounds, "configurations": rows, "profile_shipped": profiled,
                                   "cpu_workers": os.cpu_count()})


if __name__ == "__main__":
    main()
