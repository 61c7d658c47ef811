// The curated model catalog: open models in GGUF form with the hyper-parameters memory estimation needs.
// Versioned data: bump CATALOG_VERSION whenever an entry, file name or number changes.
// Repos and file names are the well-known public GGUF uploads (checked against their Hugging Face listings);
// `sha256` is given only where it was verified from two independent sources — pull verifies it when present.

export const CATALOG_VERSION = "2026.11.29";

export type CatalogTask = "chat" | "embedding" | "rerank";
export type CatalogLang = "zh" | "en";

/** Quantizations the catalog names (llama.cpp file-type names). */
export type CatalogQuant = "F16" | "Q8_0" | "Q6_K" | "Q5_K_M" | "Q4_K_M" | "Q4_0";

export interface CatalogArch {
  /** GGUF `general.architecture`. */
  arch: string;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  embedding: number;
  ffn: number;
  vocab: number;
  /** Training context length (tokens). */
  contextLength: number;
  /** Bidirectional encoders (BERT family) keep no KV cache. */
  encoder?: boolean;
}

export interface CatalogFile {
  quant: CatalogQuant;
  repo: string;
  file: string;
  sha256?: string;
  sizeBytes?: number;
}

export interface CatalogEntry {
  name: string;
  family: string;
  /** Parameter count. */
  params: number;
  licence: string;
  /** Languages the model is good at ("zh"/"en"); multilingual models list both. */
  languages: CatalogLang[];
  tasks: CatalogTask[];
  /** Curated quality rank within a task (higher is better); used only to pick recommendations. */
  rank: number;
  arch: CatalogArch;
  files: CatalogFile[];
  note?: string;
}

// File lists per naming convention of the uploader.
const qwenOfficial = (repo: string, stem: string, quants: CatalogQuant[]): CatalogFile[] =>
  quants.map((q) => ({ quant: q, repo, file: `${stem}-${q === "F16" ? "fp16" : q.toLowerCase()}.gguf` }));
const bartowski = (repo: string, stem: string, quants: CatalogQuant[]): CatalogFile[] =>
  quants.map((q) => ({ quant: q, repo, file: `${stem}-${q === "F16" ? "f16" : q}.gguf` }));
const theBloke = (repo: string, stem: string, quants: CatalogQuant[]): CatalogFile[] =>
  quants.map((q) => ({ quant: q, repo, file: `${stem}.${q}.gguf` }));
const gpustack = (repo: string, stem: string, quants: CatalogQuant[]): CatalogFile[] =>
  quants.map((q) => ({ quant: q, repo, file: `${stem}-${q === "F16" ? "FP16" : q}.gguf` }));
const compendium = (repo: string, stem: string, quants: CatalogQuant[]): CatalogFile[] =>
  quants.map((q) => ({ quant: q, repo, file: `${stem}-${q.toLowerCase()}.gguf` }));

const STD: CatalogQuant[] = ["Q4_0", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"];

export const CATALOG: readonly CatalogEntry[] = [
  {
    name: "qwen2.5-0.5b-instruct",
    family: "Qwen2.5",
    params: 0.494e9,
    licence: "apache-2.0",
    languages: ["zh", "en"],
    tasks: ["chat"],
    rank: 10,
    arch: {
      arch: "qwen2",
      layers: 24,
      heads: 14,
      kvHeads: 2,
      headDim: 64,
      embedding: 896,
      ffn: 4864,
      vocab: 151936,
      contextLength: 32768,
    },
    files: qwenOfficial("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct", [...STD, "F16"]),
  },
  {
    name: "qwen2.5-1.5b-instruct",
    family: "Qwen2.5",
    params: 1.54e9,
    licence: "apache-2.0",
    languages: ["zh", "en"],
    tasks: ["chat"],
    rank: 30,
    arch: {
      arch: "qwen2",
      layers: 28,
      heads: 12,
      kvHeads: 2,
      headDim: 128,
      embedding: 1536,
      ffn: 8960,
      vocab: 151936,
      contextLength: 32768,
    },
    files: qwenOfficial("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "qwen2.5-1.5b-instruct", [...STD, "F16"]),
  },
  {
    name: "qwen2.5-3b-instruct",
    family: "Qwen2.5",
    params: 3.09e9,
    licence: "qwen-research",
    languages: ["zh", "en"],
    tasks: ["chat"],
    rank: 50,
    arch: {
      arch: "qwen2",
      layers: 36,
      heads: 16,
      kvHeads: 2,
      headDim: 128,
      embedding: 2048,
      ffn: 11008,
      vocab: 151936,
      contextLength: 32768,
    },
    files: bartowski("bartowski/Qwen2.5-3B-Instruct-GGUF", "Qwen2.5-3B-Instruct", [...STD, "F16"]),
  },
  {
    name: "qwen2.5-7b-instruct",
    family: "Qwen2.5",
    params: 7.62e9,
    licence: "apache-2.0",
    languages: ["zh", "en"],
    tasks: ["chat"],
    rank: 80,
    arch: {
      arch: "qwen2",
      layers: 28,
      heads: 28,
      kvHeads: 4,
      headDim: 128,
      embedding: 3584,
      ffn: 18944,
      vocab: 152064,
      contextLength: 32768,
    },
    files: bartowski("bartowski/Qwen2.5-7B-Instruct-GGUF", "Qwen2.5-7B-Instruct", STD),
  },
  {
    name: "qwen3-embedding-0.6b",
    family: "Qwen3-Embedding",
    params: 0.596e9,
    licence: "apache-2.0",
    languages: ["zh", "en"],
    tasks: ["embedding"],
    rank: 80,
    arch: {
      arch: "qwen3",
      layers: 28,
      heads: 16,
      kvHeads: 8,
      headDim: 128,
      embedding: 1024,
      ffn: 3072,
      vocab: 151669,
      contextLength: 32768,
    },
    files: [
      { quant: "Q8_0", repo: "Qwen/Qwen3-Embedding-0.6B-GGUF", file: "Qwen3-Embedding-0.6B-Q8_0.gguf" },
      { quant: "F16", repo: "Qwen/Qwen3-Embedding-0.6B-GGUF", file: "Qwen3-Embedding-0.6B-f16.gguf" },
    ],
  },
  {
    name: "bge-reranker-v2-m3",
    family: "BGE",
    params: 0.568e9,
    licence: "apache-2.0",
    languages: ["zh", "en"],
    tasks: ["rerank"],
    rank: 70,
    arch: {
      arch: "bert",
      layers: 24,
      heads: 16,
      kvHeads: 16,
      headDim: 64,
      embedding: 1024,
      ffn: 4096,
      vocab: 250002,
      contextLength: 8192,
      encoder: true,
    },
    files: [
      ...gpustack("gpustack/bge-reranker-v2-m3-GGUF", "bge-reranker-v2-m3", ["Q4_K_M", "F16"]),
      {
        quant: "Q8_0",
        repo: "gpustack/bge-reranker-v2-m3-GGUF",
        file: "bge-reranker-v2-m3-Q8_0.gguf",
        sha256: "a43c7c9b11a4c1517e5bf95151960e1621d1b72f7a493364b01e386cf1aaa1d3",
        sizeBytes: 635_676_416,
      },
    ],
    note: "XLM-RoBERTa cross-encoder; llama.cpp arch id is bert-class (xlm-roberta)",
  },
  {
    name: "llama3.2-1b-instruct",
    family: "Llama 3.2",
    params: 1.24e9,
    licence: "llama3.2",
    languages: ["en"],
    tasks: ["chat"],
    rank: 20,
    arch: {
      arch: "llama",
      layers: 16,
      heads: 32,
      kvHeads: 8,
      headDim: 64,
      embedding: 2048,
      ffn: 8192,
      vocab: 128256,
      contextLength: 131072,
    },
    files: bartowski("bartowski/Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct", [...STD, "F16"]),
  },
  {
    name: "llama3.2-3b-instruct",
    family: "Llama 3.2",
    params: 3.21e9,
    licence: "llama3.2",
    languages: ["en"],
    tasks: ["chat"],
    rank: 45,
    arch: {
      arch: "llama",
      layers: 28,
      heads: 24,
      kvHeads: 8,
      headDim: 128,
      embedding: 3072,
      ffn: 8192,
      vocab: 128256,
      contextLength: 131072,
    },
    files: bartowski("bartowski/Llama-3.2-3B-Instruct-GGUF", "Llama-3.2-3B-Instruct", [...STD, "F16"]),
  },
  {
    name: "llama3.1-8b-instruct",
    family: "Llama 3.1",
    params: 8.03e9,
    licence: "llama3.1",
    languages: ["en"],
    tasks: ["chat"],
    rank: 75,
    arch: {
      arch: "llama",
      layers: 32,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      embedding: 4096,
      ffn: 14336,
      vocab: 128256,
      contextLength: 131072,
    },
    files: bartowski("bartowski/Meta-Llama-3.1-8B-Instruct-GGUF", "Meta-Llama-3.1-8B-Instruct", STD),
  },
  {
    name: "tinyllama-1.1b-chat",
    family: "TinyLlama",
    params: 1.1e9,
    licence: "apache-2.0",
    languages: ["en"],
    tasks: ["chat"],
    rank: 5,
    arch: {
      arch: "llama",
      layers: 22,
      heads: 32,
      kvHeads: 4,
      headDim: 64,
      embedding: 2048,
      ffn: 5632,
      vocab: 32000,
      contextLength: 2048,
    },
    files: theBloke("TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF", "tinyllama-1.1b-chat-v1.0", STD),
    note: "edge devices; English only, weak reasoning",
  },
  {
    name: "phi-2",
    family: "Phi",
    params: 2.78e9,
    licence: "mit",
    languages: ["en"],
    tasks: ["chat"],
    rank: 25,
    arch: {
      arch: "phi2",
      layers: 32,
      heads: 32,
      kvHeads: 32,
      headDim: 80,
      embedding: 2560,
      ffn: 10240,
      vocab: 51200,
      contextLength: 2048,
    },
    files: theBloke("TheBloke/phi-2-GGUF", "phi-2", STD),
    note: "base model tuned on textbook-style data; no official chat template",
  },
  {
    name: "phi-3-mini-4k-instruct",
    family: "Phi",
    params: 3.82e9,
    licence: "mit",
    languages: ["en"],
    tasks: ["chat"],
    rank: 55,
    arch: {
      arch: "phi3",
      layers: 32,
      heads: 32,
      kvHeads: 32,
      headDim: 96,
      embedding: 3072,
      ffn: 8192,
      vocab: 32064,
      contextLength: 4096,
    },
    files: [
      { quant: "Q4_K_M", repo: "microsoft/Phi-3-mini-4k-instruct-gguf", file: "Phi-3-mini-4k-instruct-q4.gguf" },
      { quant: "F16", repo: "microsoft/Phi-3-mini-4k-instruct-gguf", file: "Phi-3-mini-4k-instruct-fp16.gguf" },
    ],
  },
  {
    name: "mistral-7b-instruct-v0.2",
    family: "Mistral",
    params: 7.24e9,
    licence: "apache-2.0",
    languages: ["en"],
    tasks: ["chat"],
    rank: 65,
    arch: {
      arch: "llama",
      layers: 32,
      heads: 32,
      kvHeads: 8,
      headDim: 128,
      embedding: 4096,
      ffn: 14336,
      vocab: 32000,
      contextLength: 32768,
    },
    files: theBloke("TheBloke/Mistral-7B-Instruct-v0.2-GGUF", "mistral-7b-instruct-v0.2", STD),
  },
  {
    name: "glm-4-9b-chat",
    family: "GLM-4",
    params: 9.4e9,
    licence: "glm-4",
    languages: ["zh", "en"],
    tasks: ["chat"],
    rank: 85,
    arch: {
      arch: "chatglm",
      layers: 40,
      heads: 32,
      kvHeads: 2,
      headDim: 128,
      embedding: 4096,
      ffn: 13696,
      vocab: 151552,
      contextLength: 131072,
    },
    // second-state uses the same `<stem>-<QUANT>.gguf` / `-f16` naming as bartowski.
    files: bartowski("second-state/glm-4-9b-chat-GGUF", "glm-4-9b-chat", [...STD, "F16"]),
    note: "GLM-4 licence allows commercial use after registration with Zhipu AI",
  },
  {
    name: "bge-small-en-v1.5",
    family: "BGE",
    params: 33.4e6,
    licence: "mit",
    languages: ["en"],
    tasks: ["embedding"],
    rank: 40,
    arch: {
      arch: "bert",
      layers: 12,
      heads: 12,
      kvHeads: 12,
      headDim: 32,
      embedding: 384,
      ffn: 1536,
      vocab: 30522,
      contextLength: 512,
      encoder: true,
    },
    files: compendium("CompendiumLabs/bge-small-en-v1.5-gguf", "bge-small-en-v1.5", ["Q4_K_M", "Q8_0", "F16"]),
  },
  {
    name: "bge-small-zh-v1.5",
    family: "BGE",
    params: 24e6,
    licence: "mit",
    languages: ["zh"],
    tasks: ["embedding"],
    rank: 40,
    arch: {
      arch: "bert",
      layers: 4,
      heads: 8,
      kvHeads: 8,
      headDim: 64,
      embedding: 512,
      ffn: 2048,
      vocab: 21128,
      contextLength: 512,
      encoder: true,
    },
    files: compendium("CompendiumLabs/bge-small-zh-v1.5-gguf", "bge-small-zh-v1.5", ["Q4_K_M", "Q8_0", "F16"]),
  },
  {
    name: "bge-m3",
    family: "BGE",
    params: 0.568e9,
    licence: "mit",
    languages: ["zh", "en"],
    tasks: ["embedding"],
    rank: 70,
    arch: {
      arch: "bert",
      layers: 24,
      heads: 16,
      kvHeads: 16,
      headDim: 64,
      embedding: 1024,
      ffn: 4096,
      vocab: 250002,
      contextLength: 8192,
      encoder: true,
    },
    files: gpustack("gpustack/bge-m3-GGUF", "bge-m3", ["Q4_K_M", "Q8_0", "F16"]),
  },
];
