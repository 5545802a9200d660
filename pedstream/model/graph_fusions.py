"""Attention fusion for ONNX Runtime's CPU provider, applied to an exported pedstream model (``onnx``).

ONNX Runtime's own transformer optimiser (``onnxruntime.transformers.optimizer``, model type bert)
finds no attention in :mod:`pedstream.model.network` (a key bias instead of a mask, K and V from one
packed ``kv`` projection), so this rewrite matches the graph the torch exporter writes for it:

:func:`fuse_attention`: each ``MultiHeadAttention`` module (``q``/``kv`` projections, reshape to
heads, ``Q K^T * scale + key_bias``, softmax, ``@ V``, back to ``(B, L, d)``: about 20 nodes, 5 of
them Transposes) becomes one ``com.microsoft.Attention`` (self-attention: the q/k/v projections as one
packed ``(d, 3d)`` weight inside the op) or ``com.microsoft.MultiHeadAttention`` (cross-attention:
q, k, v projections stay MatMuls, their biases move into the op). The additive key bias ``(B, Lk)``
is passed as ``attention_bias`` broadcast to ``(B, 1, Lq, Lk)`` (an ``Expand``), so the sum is the
same for any bias value, not only 0/-1e4 (broadcast over heads: needs ONNX Runtime >= 1.22, which
fixed that broadcast for batch > 1; pyproject pins it). The scale is the exported constant.

Not done, measured: ``Add + LayerNormalization`` as ``com.microsoft.SkipLayerNormalization`` is
about 4x SLOWER on this CPU at (32, 53, 64) (ONNX Runtime 1.32: 0.52 ms against 0.13 ms per call), so
the residual adds stay as they are; nor is ``MatMul + bias`` on 3-D tensors as ``Reshape -> Gemm(bias) ->
Reshape`` faster (the same 1 thread kernel time: the Gemm runs its GEMM slower than MatMul does).
Measurements in bench/results/model_profile.md.

The rewrite keeps the math: outputs differ by float32 rounding only (summation order inside ONNX Runtime's
kernels; tests/model/test_graph_fusions.py bounds it on exported networks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["fuse_attention", "eliminate_dead_nodes"]

_MS = "com.microsoft"


class _G:
    """Index of a graph: producers, consumers, constants (initializers), shapes from value_info."""

    def __init__(self, proto: Any) -> None:
        from onnx import numpy_helper

        self.proto = proto
        self.g = proto.graph
        self._np = numpy_helper
        self.inits = {i.name: i for i in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.consumers: dict[str, list[Any]] = {}
        for n in self.g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.outputs = {o.name for o in self.g.output}
        self.shapes = {}
        for v in [*self.g.value_info, *self.g.input, *self.g.output]:
            if v.type.tensor_type.HasField("shape"):
                self.shapes[v.name] = tuple(d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
                                            for d in v.type.tensor_type.shape.dim)
        self._names = {i.name for i in self.g.initializer} | set(self.producer) | {i.name for i in self.g.input}

    def const(self, name: str) -> np.ndarray | None:
        i = self.inits.get(name)
        return None if i is None else self._np.to_array(i)

    def prod(self, name: str, op: str) -> Any | None:
        n = self.producer.get(name)
        return n if n is not None and n.op_type == op and n.domain in ("", "ai.onnx") else None

    def only(self, name: str) -> Any | None:
        c = self.consumers.get(name, [])
        return c[0] if len(c) == 1 and name not in self.outputs else None

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def fresh(self, base: str) -> str:
        name, k = base, 0
        while name in self._names:
            k += 1
            name = f"{base}_{k}"
        self._names.add(name)
        return name

    def add_const(self, arr: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        t = self._np.from_array(np.ascontiguousarray(arr), name=name)
        self.g.initializer.append(t)
        self.inits[name] = t
        return name


def _linear(G: _G, name: str) -> tuple[str, np.ndarray, np.ndarray] | None:
    """``name`` = ``Add(MatMul(x, W), b)`` (constant W 2-D, b 1-D): (x, W, b)."""
    add = G.prod(name, "Add")
    if add is None:
        return None
    for k in (0, 1):
        mm = G.prod(add.input[k], "MatMul")
        b = G.const(add.input[1 - k])
        if mm is not None and b is not None and b.ndim == 1:
            w = G.const(mm.input[1])
            if w is not None and w.ndim == 2 and w.shape[1] == b.shape[0]:
                return mm.input[0], w, b
    return None


def _perm(G: _G, node: Any | None, perm: list[int]) -> bool:
    return node is not None and list(G.attr(node, "perm", [])) == perm


def _slice_squeeze(G: _G, name: str) -> tuple[str, int] | None:
    """``name`` = ``Squeeze(Slice(x, [i], [i+1], axes [0]), [0])``: (x, i)."""
    sq = G.prod(name, "Squeeze")
    sl = G.prod(sq.input[0], "Slice") if sq is not None and len(sq.input) > 1 else None
    if sl is None or len(sl.input) < 4 or list(G.const(sq.input[1]) if G.const(sq.input[1]) is not None else []) != [0]:
        return None
    st, en, ax = (G.const(sl.input[j]) for j in (1, 2, 3))
    steps = G.const(sl.input[4]) if len(sl.input) > 4 and sl.input[4] else np.array([1])
    if any(v is None or v.size != 1 for v in (st, en, ax, steps)) or int(ax.reshape(())) != 0 or int(steps.reshape(())) != 1:
        return None
    i = int(st.reshape(()))
    return (sl.input[0], i) if int(en.reshape(())) == i + 1 else None


def _match_attention(G: _G, sm: Any) -> dict[str, Any] | None:
    if G.attr(sm, "axis", -1) not in (-1, 3):
        return None
    add = G.prod(sm.input[0], "Add")
    if add is None:
        return None
    mul = unsq = None
    for k in (0, 1):
        if G.prod(add.input[k], "Mul") is not None and G.prod(add.input[1 - k], "Unsqueeze") is not None:
            mul, unsq = G.prod(add.input[k], "Mul"), G.prod(add.input[1 - k], "Unsqueeze")
    if mul is None or len(unsq.input) < 2 or list(G.const(unsq.input[1]) if G.const(unsq.input[1]) is not None else []) != [1, 2]:
        return None
    qk = scale = None
    for k in (0, 1):
        c = G.const(mul.input[1 - k])
        if G.prod(mul.input[k], "MatMul") is not None and c is not None and c.size == 1:
            qk, scale = G.prod(mul.input[k], "MatMul"), float(c.reshape(()))
    if qk is None:
        return None
    qt, kt = G.prod(qk.input[0], "Transpose"), G.prod(qk.input[1], "Transpose")
    if not (_perm(G, qt, [0, 2, 1, 3]) and _perm(G, kt, [0, 1, 3, 2])):
        return None
    qr = G.prod(qt.input[0], "Reshape")
    qshape = G.const(qr.input[1]) if qr is not None else None
    if qshape is None or qshape.size != 4 or qshape[2] <= 0 or qshape[3] <= 0:
        return None
    heads, dk = int(qshape[2]), int(qshape[3])
    q = _linear(G, qr.input[0])
    k_src = _slice_squeeze(G, kt.input[0])
    pv = G.only(sm.output[0])
    if q is None or k_src is None or k_src[1] != 0 or pv is None or pv.op_type != "MatMul" or pv.input[0] != sm.output[0]:
        return None
    v_src = _slice_squeeze(G, pv.input[1])
    if v_src is None or v_src[0] != k_src[0] or v_src[1] != 1:
        return None
    permute = G.prod(k_src[0], "Transpose")
    if not _perm(G, permute, [2, 0, 3, 1, 4]):
        return None
    kvr = G.prod(permute.input[0], "Reshape")
    kvshape = G.const(kvr.input[1]) if kvr is not None else None
    if kvshape is None or kvshape.size != 5 or list(kvshape[2:]) != [2, heads, dk]:
        return None
    kv = _linear(G, kvr.input[0])
    tr = G.only(pv.output[0])
    rs = G.only(tr.output[0]) if _perm(G, tr, [0, 2, 1, 3]) else None
    rshape = G.const(rs.input[1]) if rs is not None and rs.op_type == "Reshape" else None
    d = heads * dk
    if kv is None or rshape is None or rshape.size != 3 or int(rshape[2]) != d:
        return None
    (hq, wq, bq), (hkv, wkv, bkv) = q, kv
    if wq.shape != (d, d) or wkv.shape != (d, 2 * d):
        return None
    return {"hq": hq, "wq": wq, "bq": bq, "hkv": hkv, "wk": wkv[:, :d], "wv": wkv[:, d:], "bk": bkv[:d],
            "bv": bkv[d:], "heads": heads, "scale": scale, "key_bias4": unsq.output[0], "out": rs}


def fuse_attention(proto: Any) -> int:
    """Replace each attention pattern of ``proto`` (in place; see the module docstring); returns how many."""
    from onnx import helper

    G = _G(proto)
    plans = [m for m in (_match_attention(G, n) for n in G.g.node if n.op_type == "Softmax" and n.domain in ("", "ai.onnx"))
             if m is not None]
    if not plans:
        return 0
    replace: dict[int, list[Any]] = {}
    one_one = G.add_const(np.array([1, 1], np.int64), "pedstream_attn_ones2")
    one = G.add_const(np.array([1], np.int64), "pedstream_attn_one")
    for k, m in enumerate(plans):
        rs = m["out"]
        base = G.fresh(f"pedstream_attn{k}")
        lq, shape, ab = f"{base}_lq", f"{base}_bias_shape", f"{base}_bias"
        new = [helper.make_node("Shape", [m["hq"]], [lq], name=f"{base}_shape", start=1, end=2),
               helper.make_node("Concat", [one_one, lq, one], [shape], name=f"{base}_concat", axis=0),
               helper.make_node("Expand", [m["key_bias4"], shape], [ab], name=f"{base}_expand")]
        bias = G.add_const(np.concatenate([m["bq"], m["bk"], m["bv"]]).astype(np.float32), f"{base}_qkv_bias")
        if m["hq"] == m["hkv"]:  # self-attention: one packed projection inside the op
            w = G.add_const(np.concatenate([m["wq"], m["wk"], m["wv"]], axis=1).astype(np.float32), f"{base}_qkv_weight")
            new.append(helper.make_node("Attention", [m["hq"], w, bias, "", "", ab], [rs.output[0]], name=base,
                                        domain=_MS, num_heads=m["heads"], scale=m["scale"]))
        else:
            qkv = []
            for part, src in (("q", "hq"), ("k", "hkv"), ("v", "hkv")):
                w = G.add_const(m[f"w{part}"].astype(np.float32), f"{base}_{part}_weight")
                qkv.append(f"{base}_{part}")
                new.append(helper.make_node("MatMul", [m[src], w], [qkv[-1]], name=f"{base}_{part}_matmul"))
            new.append(helper.make_node("MultiHeadAttention", [*qkv, bias, "", ab], [rs.output[0]], name=base,
                                        domain=_MS, num_heads=m["heads"], scale=m["scale"]))
        replace[id(rs)] = new
    nodes = []
    for n in G.g.node:
        nodes.extend(replace.get(id(n), [n]))
    del G.g.node[:]
    G.g.node.extend(nodes)
    _ms_opset(proto)
    eliminate_dead_nodes(proto)
    return len(plans)


def _ms_opset(proto: Any) -> None:
    from onnx import helper

    if not any(o.domain == _MS for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(_MS, 1))


def eliminate_dead_nodes(proto: Any) -> int:
    """Drop nodes none of whose outputs is used (repeatedly), then unused initializers; returns nodes removed."""
    g = proto.graph
    outputs = {o.name for o in g.output}
    removed = 0
    while True:
        used = {i for n in g.node for i in n.input} | outputs
        keep = [n for n in g.node if any(o and o in used for o in n.output)]
        if len(keep) == len(g.node):
            break
        removed += len(g.node) - len(keep)
        del g.node[:]
        g.node.extend(keep)
    used = {i for n in g.node for i in n.input} | outputs
    inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    live = used | {o for n in g.node for o in n.output}
    vis = [v for v in g.value_info if v.name in live]
    del g.value_info[:]
    g.value_info.extend(vis)
    return removed
