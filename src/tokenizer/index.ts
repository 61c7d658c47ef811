// Byte-level BPE: GGUF vocabularies, llama.cpp-compatible pre-tokenizers, encode/decode and training.
export * from "./bytes.js";
export * from "./pretokenize.js";
export * from "./vocab.js";
export * from "./bpe.js";
export * from "./train.js";
