// GGUF: read (bounds-checked), write, quantize. Imports only core.
export * from "./types.js";
export * from "./quant.js";
export * from "./writer.js";
export * from "./reader.js";
