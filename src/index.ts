// dajian library API. The CLI (src/cli) and the HTTP server (src/server) are thin shells over these exports.
export * from "./core/errors.js";
export * from "./core/home.js";
export * from "./core/config.js";
export * from "./core/progress.js";
export { VERSION } from "./core/version.js";
export * from "./core/outbound.js";
export * from "./gguf/index.js";
export * from "./tokenizer/index.js";
export { writeTinyLlamaGguf, TINY_CORPUS, type TinyLlamaOptions, type TinyLlamaResult } from "./train/tiny-model.js";
export {
  detectFormat,
  parseDocument,
  parseDocumentIsolated,
  chunkDocument,
  documentText,
  foldForSearch,
  normalizeDisplay,
  SUPPORTED_HINT,
  estimateTokens as estimateChunkTokens,
  type ParseOptions,
  type Block,
  type Chunk,
  type ChunkOptions,
  type DocFormat,
  type ParsedDocument,
  type TableData,
} from "./ingest/index.js";
export * from "./index/index.js";
export * from "./models/types.js";
export * from "./models/presets.js";
export * from "./models/registry.js";
export {
  ModelManager,
  openByNameOrPath,
  openEntry,
  type LoadedModel,
  type ModelManagerOptions,
} from "./models/manager.js";
export { LocalChatModel, llamaBackend, sharedLlama, type LocalLoadOptions } from "./models/local.js";
export { RemoteChatModel, estimateTokens, type FetchLike, type RemoteModelOptions } from "./models/remote.js";
export { pullModel, resolvePullRef, type PullOptions, type PullResult } from "./models/pull.js";
export { recordUsage, usageSummary, withUsageLog, type UsageRecord, type UsageSummary } from "./models/usage.js";
export { SlotQueue } from "./models/queue.js";
export * from "./models/catalog.js";
export * from "./models/memory.js";
export { detectHardware, detectGpu, measureMemBandwidth, type HardwareInfo, type GpuInfo } from "./models/hardware.js";
export { measurePeakRss, type MeasuredMemory, type MeasureOptions } from "./models/memory-measure.js";
export {
  quantizeModel,
  parseQuantType,
  findLlamaLibrary,
  QUANT_FTYPES,
  type QuantType,
  type QuantizeOptions,
  type QuantizeResult,
} from "./models/quantize.js";
export {
  importModel,
  exportModel,
  summarizeGguf,
  sha256File,
  type ModelManifest,
  type ImportResult,
} from "./models/import.js";
export { perplexity, type PerplexityOptions, type PerplexityResult } from "./models/perplexity.js";
export { benchModel, type BenchModelOptions, type BenchModelResult } from "./models/bench-model.js";
export * from "./answer/types.js";
export {
  answerQuestion,
  answerStream,
  rewriteFollowUp,
  type AnswerDeps,
  type AnswerEvent,
  type AskRequest,
  type SearchFn,
} from "./answer/answer.js";
export { ConversationStore, type Conversation, type StoredMessage } from "./answer/conversations.js";
export { EXTRACTIVE_HINT, extractiveAnswer } from "./answer/extractive.js";
export { buildGroundedPrompt, systemPrompt } from "./answer/prompt.js";
export { CitationRewriter, rewriteCitations, buildCitations } from "./answer/citations.js";
export * from "./security/index.js";
export { Engine, type BackendInfo } from "./engine/index.js";
export { LlamaTrainer, learningRate, type TrainHyper, type StepResult } from "./train/trainer.js";
export { writeLlamaGguf, type LlamaConfig, type LlamaFileType } from "./train/llama-gguf.js";
export { llamaLogits, readLlamaConfig } from "./train/llama-model.js";
export { startRun, resumeRun, type TrainRunOptions, type TrainSummary } from "./train/run/run.js";
export { PRESETS, resolveShape, type ModelShape as TrainShape } from "./train/run/presets.js";
export { estimateTraining, type TrainingEstimate } from "./train/run/preflight.js";
export { LoraTrainer, parseTargets, type LoraOptions, type SftRow } from "./train/lora/trainer.js";
export { finetune, type FinetuneSettings, type FinetuneSummary } from "./train/lora/run.js";
export { mergeAdapter } from "./train/lora/merge.js";
export { scoreQa, type QaScore } from "./train/lora/eval-qa.js";
export * from "./gguf/adapter.js";
export * from "./convert/index.js";
