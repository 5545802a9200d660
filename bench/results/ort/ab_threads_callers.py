import sys, time, threading, numpy as np, onnxruntime as ort
paths = sys.argv[1:]; B = 32; rounds = 9; calls = 12
rng = np.random.default_rng(0)
feeds = {"ecg": rng.standard_normal((B, 12, 2442), dtype=np.float32), "iegm": rng.standard_normal((B, 7, 2442), dtype=np.float32), "mask": np.ones((B, 19), np.float32)}
def sess(path, t):
    o = ort.SessionOptions(); o.intra_op_num_threads = t; o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"]); s.run(None, feeds); return s
def one(s):
    c0 = time.process_time(); t0 = time.perf_counter()
    for _ in range(calls): s.run(None, feeds)
    return B * calls / (time.perf_counter() - t0), (time.process_time() - c0) / calls * 1e3
def two(s):
    th = [threading.Thread(target=lambda: [s.run(None, feeds) for _ in range(calls)]) for _ in range(2)]
    c0 = time.process_time(); t0 = time.perf_counter(); [t.start() for t in th]; [t.join() for t in th]
    return 2 * B * calls / (time.perf_counter() - t0), (time.process_time() - c0) / calls / 2 * 1e3
S = {p: (sess(p, 1), sess(p, 2)) for p in paths}
R = {}
for _ in range(rounds):
    for p, (s1, s2) in S.items():
        for name, fn, s in (("1 thr", one, s1), ("2 thr", one, s2), ("1 thr x 2 callers", two, s1)):
            R.setdefault((p.split("/")[-1], name), []).append(fn(s))
print("load", open("/proc/loadavg").read().split()[:3])
for k, v in R.items():
    w = [x[0] for x in v]; c = [x[1] for x in v]
    print(f"{k[0]:26s} {k[1]:18s} median {np.median(w):6.0f}  best {max(w):6.0f} win/s   cpu ms per batch-32 call {np.median(c):5.2f}")
