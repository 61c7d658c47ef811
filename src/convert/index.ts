// Hugging Face ↔ GGUF conversion in TypeScript: safetensors, tokenizer.json, config.json, PEFT LoRA adapters.
export * from "./safetensors.js";
export * from "./hf-tokenizer.js";
export * from "./hf-model.js";
export * from "./convert-hf.js";
export * from "./export-hf.js";
export * from "./lora.js";
