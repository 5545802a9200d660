"""Graph rewrites applied to an exported model that keep its math (needs the ``onnx`` package).

:func:`fuse_gelu`: torch's exact (erf) GELU is exported as five nodes,
``Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(0.5) -> Mul(x)`` (or with the ``0.5`` on ``x``), a form ONNX
Runtime's own GELU fusion does not recognise, so every GELU runs as five element-wise passes over the
tensor. Each such group becomes one ``com.microsoft.Gelu`` node (ONNX Runtime's contrib op, the same
``0.5 x (1 + erf(x / sqrt 2))``; outputs differ only by float32 rounding, about 1e-6). Profile of the
demo model at batch 32 on 2 cores: Erf + its Div/Add/Mul were about a fifth of the kernel time.


:func:`conv1d_as_conv2d`: each 1-D ``Conv`` (3-D weights) becomes ``Unsqueeze(axis 2) -> Conv``
with a ``(1, k)`` kernel ``-> Squeeze(axis 2)``: the same sums in the same order, but ONNX Runtime
runs 2-D convolutions through its blocked NCHWc kernels (graph optimisation level ``all``), which it
never does for 1-D ones. Outputs differ by float32 rounding (about 1e-6).

:func:`optimize` applies both, then :func:`pedstream.model.graph_fusions.fuse_attention` (each attention
block as one ONNX Runtime ``Attention`` / ``MultiHeadAttention`` node); ``pedstream export`` calls it.

    python -m pedstream.model.graph_opt IN.onnx OUT.onnx   # rewrite an already exported file
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["fuse_gelu", "conv1d_as_conv2d", "optimize", "main"]

_SQRT2 = float(np.sqrt(2.0))


def _scalar(inits: dict[str, Any], name: str) -> float | None:
    arr = inits.get(name)
    if arr is None or arr.size != 1:
        return None
    return float(arr.reshape(()))


def fuse_gelu(proto: Any) -> int:
    """Replace each exact-GELU group of ``proto`` (an ``onnx.ModelProto``, in place) by one
    ``com.microsoft.Gelu``; returns how many were fused. Unused constants are removed."""
    from onnx import helper, numpy_helper

    g = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}

    def only(name: str) -> Any | None:
        c = consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in graph_outputs else None

    removed: set[int] = set()
    replace: dict[int, Any] = {}
    for erf in [n for n in g.node if n.op_type == "Erf" and n.domain in ("", "ai.onnx")]:
        div = producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or not np.isclose(_scalar(inits, div.input[1]) or 0.0, _SQRT2):
            continue
        x = div.input[0]
        add = only(erf.output[0])
        if add is None or add.op_type != "Add":
            continue
        one = [i for i in add.input if i != erf.output[0]]
        if len(one) != 1 or _scalar(inits, one[0]) != 1.0:
            continue
        nxt = only(add.output[0])
        if nxt is None or nxt.op_type != "Mul" or only(div.output[0]) is not erf:
            continue
        other = [i for i in nxt.input if i != add.output[0]]
        if len(other) != 1:
            continue
        if _scalar(inits, other[0]) == 0.5:  # 0.5 * (1 + erf) first, then x * that
            last = only(nxt.output[0])
            if last is None or last.op_type != "Mul" or x not in last.input:
                continue
            group = [div, erf, add, nxt, last]
        else:  # (x * 0.5) * (1 + erf)
            half = producer.get(other[0])
            if (half is None or half.op_type != "Mul" or x not in half.input or only(half.output[0]) is not nxt
                    or _scalar(inits, [i for i in half.input if i != x][0]) != 0.5):
                continue
            group, last = [div, erf, add, half, nxt], nxt
        if any(id(n) in removed for n in group):
            continue
        removed.update(id(n) for n in group)
        replace[id(last)] = helper.make_node("Gelu", [x], [last.output[0]], domain="com.microsoft",
                                             name=f"{last.name or erf.name}_gelu")
    if not replace:
        return 0
    nodes = [replace.get(id(n), n) for n in g.node if id(n) not in removed or id(n) in replace]
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used or i.name in graph_outputs]
    del g.initializer[:]
    g.initializer.extend(keep)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replace)


def conv1d_as_conv2d(proto: Any) -> int:
    """Rewrite every 1-D ``Conv`` of ``proto`` (in place) as a 2-D one between ``Unsqueeze``/``Squeeze``
    on axis 2; returns how many. Convolutions already 2-D (4-D weights) are left alone."""
    import numpy as np
    from onnx import helper, numpy_helper

    g = proto.graph
    inits = {i.name: i for i in g.initializer}
    nodes: list[Any] = []
    k = 0
    axis = None
    for n in g.node:
        w = inits.get(n.input[1]) if n.op_type == "Conv" and n.domain in ("", "ai.onnx") and len(n.input) > 1 else None
        if w is None or len(w.dims) != 3:
            nodes.append(n)
            continue
        if axis is None:
            axis = "pedstream_conv2d_axis"
            g.initializer.append(numpy_helper.from_array(np.array([2], dtype=np.int64), name=axis))
        w2 = numpy_helper.to_array(w)[:, :, None, :]
        w2_name = f"{w.name}_2d"
        if w2_name not in inits:
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w2), name=w2_name))
            inits[w2_name] = g.initializer[-1]
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            nodes.append(n)
            continue
        new = {"kernel_shape": [1, int(w.dims[2])]}
        if "strides" in attrs:
            new["strides"] = [1, *attrs["strides"]]
        if "pads" in attrs:
            new["pads"] = [0, attrs["pads"][0], 0, attrs["pads"][1]]
        if "dilations" in attrs:
            new["dilations"] = [1, *attrs["dilations"]]
        if "group" in attrs:
            new["group"] = attrs["group"]
        base = n.name or f"conv{k}"
        x4, y4 = f"{base}_in4d", f"{base}_out4d"
        nodes.append(helper.make_node("Unsqueeze", [n.input[0], axis], [x4], name=f"{base}_unsqueeze"))
        nodes.append(helper.make_node("Conv", [x4, w2_name, *n.input[2:]], [y4], name=f"{base}_2d", **new))
        nodes.append(helper.make_node("Squeeze", [y4, axis], list(n.output), name=f"{base}_squeeze"))
        k += 1
    if k:
        del g.node[:]
        g.node.extend(nodes)
        used = {i for n in g.node for i in n.input}
        keep = [i for i in g.initializer if i.name in used]
        del g.initializer[:]
        g.initializer.extend(keep)
    return k


def optimize(proto: Any) -> dict[str, int]:
    """:func:`fuse_gelu`, :func:`conv1d_as_conv2d`, then the transformer fusions of
    :func:`pedstream.model.graph_fusions.fuse_attention`, in place; how many of each."""
    from pedstream.model.graph_fusions import fuse_attention

    return {"gelu": fuse_gelu(proto), "conv2d": conv1d_as_conv2d(proto), "attention": fuse_attention(proto)}


def main(argv: list[str] | None = None) -> int:
    import onnx

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m pedstream.model.graph_opt IN.onnx OUT.onnx", file=sys.stderr)
        return 2
    proto = onnx.load(args[0])
    done = optimize(proto)
    onnx.save(proto, args[1])
    print(f"{args[1]}: {done['gelu']} GELU groups fused, {done['conv2d']} 1-D convolutions made 2-D, "
          f"{done['attention']} attention blocks fused")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
