import { describe, expect, it } from "vitest";
import { isDajianError } from "../core/errors.js";
import {
  CATALOG,
  catalogReport,
  cpuTokensPerSecond,
  findCatalogEntry,
  fitEntry,
  resolveCatalogRef,
} from "./catalog.js";
import type { HardwareInfo } from "./hardware.js";

const GiB = 1024 ** 3;
const machine = (ramGiB: number, extra: Partial<HardwareInfo> = {}): HardwareInfo => ({
  ramTotal: ramGiB * GiB,
  ramAvailable: ramGiB * GiB * 0.9,
  cpuCores: 8,
  cpuModel: "test",
  memBandwidth: 20e9,
  gpu: null,
  ...extra,
});

describe("catalog data", () => {
  it("covers the models the issue names, each with sources and a consistent shape", () => {
    for (const n of [
      "qwen2.5-0.5b-instruct",
      "qwen2.5-1.5b-instruct",
      "qwen2.5-3b-instruct",
      "qwen2.5-7b-instruct",
      "qwen3-embedding-0.6b",
      "bge-reranker-v2-m3",
      "llama3.2-1b-instruct",
      "llama3.2-3b-instruct",
      "llama3.1-8b-instruct",
      "tinyllama-1.1b-chat",
      "phi-2",
      "phi-3-mini-4k-instruct",
      "mistral-7b-instruct-v0.2",
      "glm-4-9b-chat",
      "bge-small-en-v1.5",
      "bge-small-zh-v1.5",
      "bge-m3",
    ])
      expect(findCatalogEntry(n), n).toBeDefined();
    const names = new Set<string>();
    for (const e of CATALOG) {
      expect(names.has(e.name), `duplicate ${e.name}`).toBe(false);
      names.add(e.name);
      expect(e.files.length).toBeGreaterThan(0);
      for (const f of e.files) {
        expect(f.repo).toMatch(/^[\w.-]+\/[\w.-]+$/);
        expect(f.file).toMatch(/\.gguf$/);
        if (f.sha256) expect(f.sha256).toMatch(/^[0-9a-f]{64}$/);
      }
      expect(new Set(e.files.map((f) => f.quant)).size).toBe(e.files.length);
      const a = e.arch;
      expect(a.heads % a.kvHeads).toBe(0);
      // Attention width matches the hidden size for these architectures (Qwen3 is the known exception: 16×128 vs 1024).
      if (e.name !== "qwen3-embedding-0.6b") expect(a.heads * a.headDim).toBe(a.embedding);
      // Parameter count is plausible for the shape: within 35 % of a transformer's layer + embedding count.
      const attn = a.embedding * a.heads * a.headDim * 2 + a.embedding * a.kvHeads * a.headDim * 2;
      const ffn = a.encoder || a.arch === "phi2" ? 2 * a.embedding * a.ffn : 3 * a.embedding * a.ffn;
      const approx = a.layers * (attn + ffn) + a.vocab * a.embedding;
      expect(e.params / approx, e.name).toBeGreaterThan(0.65);
      expect(e.params / approx, e.name).toBeLessThan(1.5);
    }
  });
});

describe("resolveCatalogRef", () => {
  it("maps NAME and NAME:QUANT to an hf: URL", () => {
    const r = resolveCatalogRef("qwen2.5-1.5b-instruct")!;
    expect(r.quant).toBe("Q4_K_M");
    expect(r.url).toBe("hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF/qwen2.5-1.5b-instruct-q4_k_m.gguf");
    const q8 = resolveCatalogRef("bge-reranker-v2-m3:q8_0")!;
    expect(q8.url).toBe("hf:gpustack/bge-reranker-v2-m3-GGUF/bge-reranker-v2-m3-Q8_0.gguf");
    expect(q8.sha256).toMatch(/^[0-9a-f]{64}$/);
  });
  it("returns undefined for other references and throws for a missing quantization", () => {
    expect(resolveCatalogRef("hf:someone/repo/file.gguf")).toBeUndefined();
    expect(resolveCatalogRef("./model.gguf")).toBeUndefined();
    expect(resolveCatalogRef("no-such-model")).toBeUndefined();
    let err: unknown;
    try {
      resolveCatalogRef("phi-2:F16");
    } catch (e) {
      err = e;
    }
    expect(isDajianError(err, "not_found")).toBe(true);
    expect((err as Error & { hint: string }).hint).toContain("phi-2:Q4_K_M");
  });
});

describe("fit against a machine", () => {
  it("a 2 GiB machine cannot hold 7B models but fits small ones", () => {
    const hw = machine(2);
    expect(fitEntry(findCatalogEntry("qwen2.5-7b-instruct")!, hw).fits).toBe(false);
    const small = fitEntry(findCatalogEntry("qwen2.5-0.5b-instruct")!, hw);
    expect(small.fits).toBe(true);
    expect(small.memory!.ram).toBeLessThanOrEqual(hw.ramAvailable);
  });
  it("more RAM allows a larger context; memory grows with context", () => {
    const e = findCatalogEntry("llama3.1-8b-instruct")!;
    const mid = fitEntry(e, machine(8));
    const big = fitEntry(e, machine(64));
    expect(mid.fits && big.fits).toBe(true);
    expect(big.maxContextSize!).toBeGreaterThan(mid.maxContextSize!);
  });
  it("prefers the GPU when its free VRAM holds the model", () => {
    const hw = machine(16, { gpu: { type: "cuda", vramTotal: 24 * GiB, vramFree: 22 * GiB } });
    const f = fitEntry(findCatalogEntry("qwen2.5-7b-instruct")!, hw);
    expect(f.device).toBe("gpu");
    expect(f.memory!.vram).toBeGreaterThan(f.memory!.weights * 0.9);
  });
  it("recommends one chat and one embedding model, honouring --lang", () => {
    const r = catalogReport(machine(16), { lang: "zh" });
    expect(r.recommended.chat).toBeDefined();
    expect(r.recommended.embedding).toBeDefined();
    const chat = findCatalogEntry(r.recommended.chat!.split(":")[0])!;
    expect(chat.languages).toContain("zh");
    expect(chat.tasks).toContain("chat");
    expect(findCatalogEntry(r.recommended.embedding!.split(":")[0])!.tasks).toContain("embedding");
    const onlyFit = catalogReport(machine(1), { fits: true });
    expect(onlyFit.models.every((m) => m.fits)).toBe(true);
    expect(onlyFit.models.length).toBeLessThan(CATALOG.length);
  });
  it("speed estimate falls with model size", () => {
    const hw = machine(64);
    expect(cpuTokensPerSecond(hw, 0.5e9, 0.4e9)).toBeGreaterThan(cpuTokensPerSecond(hw, 7e9, 4.5e9));
  });
});

describe("hardware", () => {
  it("reports RAM, cores and a memory bandwidth for this machine", async () => {
    const { detectHardware } = await import("./hardware.js");
    const hw = await detectHardware({ gpu: false });
    expect(hw.ramTotal).toBeGreaterThan(256 * 1024 ** 2);
    expect(hw.ramAvailable).toBeGreaterThan(0);
    expect(hw.ramAvailable).toBeLessThanOrEqual(hw.ramTotal);
    expect(hw.cpuCores).toBeGreaterThanOrEqual(1);
    expect(hw.memBandwidth).toBeGreaterThan(1e8);
    expect(hw.gpu).toBeNull();
  });
});
