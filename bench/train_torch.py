# PyTorch side of `npm run bench:train`: the same llama model (RMSNorm, RoPE in ggml's adjacent-pair mode, GQA,
# SwiGLU, explicit causal attention), the same initial weights, token batches, learning-rate schedule, AdamW and
# gradient clipping as dajian, on the CPU. Reads the folder bench/train.ts prepared; prints one JSON line.
# Usage: python3 bench/train_torch.py DIR   (Debian: apt-get install python3-torch libopenblas0-pthread)
import json
import math
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main(d):
    cfg = json.load(open(f"{d}/config.json"))
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    V, L, D, H, KV, FF = (cfg[k] for k in ("vocab", "layers", "dim", "heads", "kvHeads", "ffn"))
    T, B, eps, base = cfg["seq"], cfg["batch"], cfg["normEps"], cfg["ropeTheta"]
    hd, rep = D // H, H // KV

    flat = np.fromfile(f"{d}/init.f32", dtype=np.float32)
    P, off = {}, 0
    for name, dims in cfg["tensors"]:
        n = int(np.prod(dims))
        # ggml dims are [contiguous, …]: a [in, out] matrix is row-major [out, in], nn.Linear's layout
        P[name] = torch.nn.Parameter(torch.from_numpy(flat[off:off + n].reshape(list(reversed(dims))).copy()))
        off += n
    tied = "output.weight" not in P

    train = torch.from_numpy(np.fromfile(f"{d}/train.i32", dtype=np.int32).astype(np.int64)).view(-1, B, T + 1)
    val = torch.from_numpy(np.fromfile(f"{d}/val.i32", dtype=np.int32).astype(np.int64)).view(-1, B, T + 1)

    inv = base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]  # [T, hd/2]
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    mask = torch.full((T, T), float("-inf")).triu(1)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rope(x):  # [B, T, h, hd], rotating adjacent pairs as ggml's mode 0 (llama's GGUF layout)
        x2 = x.view(*x.shape[:-1], hd // 2, 2)
        a, b = x2[..., 0], x2[..., 1]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)

    def forward(tokens):
        x = F.embedding(tokens, P["token_embd.weight"])
        for l in range(L):
            p = f"blk.{l}."
            h = rms(x, P[p + "attn_norm.weight"])
            q = rope((h @ P[p + "attn_q.weight"].t()).view(B, T, H, hd)).transpose(1, 2)
            k = rope((h @ P[p + "attn_k.weight"].t()).view(B, T, KV, hd)).transpose(1, 2)
            v = (h @ P[p + "attn_v.weight"].t()).view(B, T, KV, hd).transpose(1, 2)
            if rep > 1:
                k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask, -1) @ v
            x = x + att.transpose(1, 2).reshape(B, T, D) @ P[p + "attn_output.weight"].t()
            h2 = rms(x, P[p + "ffn_norm.weight"])
            ff = F.silu(h2 @ P[p + "ffn_gate.weight"].t()) * (h2 @ P[p + "ffn_up.weight"].t())
            x = x + ff @ P[p + "ffn_down.weight"].t()
        out = P["token_embd.weight"] if tied else P["output.weight"]
        return rms(x, P["output_norm.weight"]) @ out.t()

    def loss_of(batch):
        logits = forward(batch[:, :T])
        return F.cross_entropy(logits.reshape(-1, V), batch[:, 1:].reshape(-1))

    opt = torch.optim.AdamW(P.values(), lr=cfg["lrs"][0], betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    losses, times, cpu = [], [], []
    for s, batch in enumerate(train):
        t0 = time.perf_counter()
        c0 = time.process_time()
        for g in opt.param_groups:
            g["lr"] = cfg["lrs"][s]
        opt.zero_grad(set_to_none=True)
        loss = loss_of(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(P.values(), cfg["clip"])
        opt.step()
        losses.append(loss.item())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        print(f"torch step {s + 1}/{len(train)} loss {losses[-1]:.3f} {times[-1]:.2f}s", file=sys.stderr)
    with torch.no_grad():
        val_loss = sum(loss_of(b).item() for b in val) / len(val)
    print(json.dumps({"losses": losses, "stepSeconds": times, "stepCpuSeconds": cpu, "valLoss": val_loss, "peakRss": peak_rss_bytes(),
                      "version": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1])
