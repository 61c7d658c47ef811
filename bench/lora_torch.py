# PyTorch side of `npm run bench:lora`: a hand-written LoRA (rank r on q,k,v,o,gate,up,down) over the same frozen
# llama weights (RMSNorm, RoPE in ggml's adjacent-pair mode, GQA, SwiGLU, explicit causal attention), the same token
# rows and loss masks, AdamW on A/B only, on the CPU. Prints one JSON line: step times, losses, peak RSS.
# Usage: python3 bench/lora_torch.py DIR RANK   (Debian: apt-get install python3-torch libopenblas0-pthread)
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
    return 0


def main(d, rank):
    base_rss = peak_rss_bytes()  # the interpreter + torch, before any model memory
    cfg = json.load(open(f"{d}/config.json"))
    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(0)
    V, L, D, H, KV = (cfg[k] for k in ("vocab", "layers", "dim", "heads", "kvHeads"))
    T, B, eps, base, steps = cfg["seq"], cfg["batch"], cfg["normEps"], cfg["ropeTheta"], cfg["steps"]
    hd, rep = D // H, H // KV
    flat = np.fromfile(f"{d}/weights.f32", dtype=np.float32)
    W, off = {}, 0
    for name, dims in cfg["tensors"]:
        n = int(np.prod(dims))
        # a view of `flat` (no second copy of the base): frozen, no grad
        W[name] = torch.from_numpy(flat[off:off + n].reshape(list(reversed(dims))))
        off += n
    scale = cfg["alpha"] / rank
    lora = {}
    for l in range(L):
        for t in ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"):
            name = f"blk.{l}.{t}.weight"
            out_dim, in_dim = W[name].shape
            a = torch.empty(rank, in_dim).uniform_(-1 / math.sqrt(in_dim), 1 / math.sqrt(in_dim))
            lora[name] = (torch.nn.Parameter(a), torch.nn.Parameter(torch.zeros(out_dim, rank)))
    params = [p for ab in lora.values() for p in ab]

    rows = torch.from_numpy(np.fromfile(f"{d}/rows.i32", dtype=np.int32).astype(np.int64)).view(-1, B, T + 1)
    masks = torch.from_numpy(np.fromfile(f"{d}/masks.u8", dtype=np.uint8).astype(np.bool_)).view(-1, B, T + 1)
    inv = base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    mask = torch.full((T, T), float("-inf")).triu(1)

    def rms(x, g):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * g

    def rope(x):
        x2 = x.view(*x.shape[:-1], hd // 2, 2)
        a, b = x2[..., 0], x2[..., 1]
        return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)

    def lin(name, x):
        a, b = lora[name]
        return x @ W[name].t() + ((x @ a.t()) @ b.t()) * scale

    def forward(tokens):
        x = F.embedding(tokens, W["token_embd.weight"])
        for l in range(L):
            p = f"blk.{l}."
            h = rms(x, W[p + "attn_norm.weight"])
            q = rope(lin(p + "attn_q.weight", h).view(B, T, H, hd)).transpose(1, 2)
            k = rope(lin(p + "attn_k.weight", h).view(B, T, KV, hd)).transpose(1, 2)
            v = lin(p + "attn_v.weight", h).view(B, T, KV, hd).transpose(1, 2)
            if rep > 1:
                k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
            att = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask, -1) @ v
            x = x + lin(p + "attn_output.weight", att.transpose(1, 2).reshape(B, T, D))
            h2 = rms(x, W[p + "ffn_norm.weight"])
            ff = F.silu(lin(p + "ffn_gate.weight", h2)) * lin(p + "ffn_up.weight", h2)
            x = x + lin(p + "ffn_down.weight", ff)
        out = W.get("output.weight", W["token_embd.weight"])
        return rms(x, W["output_norm.weight"]) @ out.t()

    opt = torch.optim.AdamW(params, lr=cfg["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses, times, cpu = [], [], []
    for s in range(steps):
        batch, m = rows[s], masks[s]
        t0, c0 = time.perf_counter(), time.process_time()
        targets = batch[:, 1:].masked_fill(~m[:, 1:], -100)
        loss = F.cross_entropy(forward(batch[:, :T]).reshape(-1, V), targets.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        losses.append(loss.item())
    print(json.dumps({"stepSeconds": times, "cpuSeconds": cpu, "losses": losses, "peakRss": peak_rss_bytes(), "baseRss": base_rss,
                      "version": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
